//! The BucketEncryptionGrant watch (tenancy grants, DESIGN.md 3.5): its cache feeds the claims
//! index (which re-triggers the resources a grant change affects), and each grant gets a Ready
//! condition saying whether it is valid and so in force. Grants are read guarded: one that does
//! not deserialise grants nothing and cannot stop the cache from listing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;

use super::context::{Context, Guarded};
use super::error::Error;
use super::grants;
use super::status::set_condition;
use crate::api::Condition;
use crate::api::grant::{BucketEncryptionGrant, BucketEncryptionGrantStatus, OperatorCredentials};

/// Grants as read from the API: a grant that does not deserialise still reaches the cache.
pub type GuardedGrant = super::guard::Guard<BucketEncryptionGrant>;

/// Watches the grants until `stop` resolves: every event goes into `ctx.claims`, the resources
/// it re-triggers are sent to their controller (`senders`, by claims source), and each grant's
/// status is written when it changes.
pub async fn run(
    ctx: Arc<Context>,
    senders: Vec<UnboundedSender<ObjectRef<Guarded>>>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<GuardedGrant> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store::<GuardedGrant>();
    let events_ctx = ctx.clone();
    let triggers = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|object: &mut GuardedGrant| object.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| {
            let Ok(event) = event else { return };
            let changes = events_ctx.claims.observe_grants(event);
            events_ctx
                .metrics
                .set_not_permitted(events_ctx.claims.not_permitted());
            for (to, namespace, name) in changes.retrigger {
                if let Some(sender) = senders.get(to) {
                    let _ = sender.send(ObjectRef::new(&name).within(&namespace));
                }
            }
        })
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(triggers, reader)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "grant loop reported an error");
            }
        })
        .await;
}

/// Pure: the Ready condition of a grant: `(valid, reason, message)`.
pub fn readiness(object: &GuardedGrant) -> (bool, &'static str, String) {
    let grant = match &object.0 {
        Ok(grant) => grant,
        Err(invalid) => {
            return (
                false,
                "InvalidSpec",
                format!("grants nothing: invalid spec: {}", invalid.error),
            );
        }
    };
    match grants::validate(&grant.spec) {
        Ok(()) => {
            let operator = match grant.spec.operator_credentials {
                OperatorCredentials::Allow => "may",
                OperatorCredentials::Deny => "may not",
            };
            (
                true,
                "Valid",
                format!(
                    "in force: namespaces {} may claim buckets matching {} and {operator} use the operator's credentials",
                    grant.spec.namespaces.join(", "),
                    grant.spec.buckets.join(", ")
                ),
            )
        }
        Err(problems) => (
            false,
            "InvalidSpec",
            format!("grants nothing: invalid spec: {}", problems.join("; ")),
        ),
    }
}

async fn reconcile(object: Arc<GuardedGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (meta, current) = match &object.0 {
        Ok(grant) => (grant.meta(), grant.status.clone()),
        Err(invalid) => (&invalid.metadata, None),
    };
    let name = meta.name.clone().unwrap_or_default();
    let (valid, reason, message) = readiness(&object);
    let mut status = current.clone().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        "Ready",
        valid,
        reason,
        &message,
        meta.generation,
        &jiff::Timestamp::now().to_string(),
    );
    status.observed_generation = meta.generation;
    if unchanged(current.as_ref(), &status) {
        return Ok(Action::await_change());
    }
    write_status(&ctx, &name, &status).await?;
    Ok(Action::await_change())
}

/// Whether the stored status already says all of `wanted` (conditions compared without their
/// transition time, which only moves on a flip).
fn unchanged(current: Option<&BucketEncryptionGrantStatus>, wanted: &BucketEncryptionGrantStatus) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    current.is_some_and(|current| {
        current.observed_generation == wanted.observed_generation
            && current
                .conditions
                .iter()
                .map(key)
                .eq(wanted.conditions.iter().map(key))
    })
}

async fn write_status(ctx: &Context, name: &str, status: &BucketEncryptionGrantStatus) -> Result<(), Error> {
    super::report::apply_cluster_status::<BucketEncryptionGrant>(ctx, name, status).await
}

fn error_policy(_: Arc<GuardedGrant>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "grant status could not be written");
    Action::requeue(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grant(spec: serde_json::Value) -> GuardedGrant {
        serde_json::from_value(json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionGrant",
            "metadata": {"name": "g", "uid": "u", "generation": 2},
            "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn a_grant_is_ready_when_valid() {
        let (valid, reason, message) = readiness(&grant(
            json!({"namespaces": ["payments"], "buckets": ["payments-*"], "operatorCredentials": "Allow"}),
        ));
        assert!(valid);
        assert_eq!(reason, "Valid");
        assert!(
            message.contains("payments-*") && message.contains("may use"),
            "{message}"
        );
        let (valid, reason, message) =
            readiness(&grant(json!({"namespaces": ["payments"], "buckets": ["-x"]})));
        assert!(!valid);
        assert_eq!(reason, "InvalidSpec");
        assert!(message.contains("spec.buckets[0]"), "{message}");
        let (valid, _, message) = readiness(&grant(json!({"namespaces": "payments", "buckets": ["x"]})));
        assert!(!valid, "an undeserialisable grant grants nothing: {message}");
    }
}
