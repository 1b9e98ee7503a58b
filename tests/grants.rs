//! Multi-tenant grants (DESIGN.md 3.5): with `--tenancy grants` only what a
//! BucketEncryptionGrant permits is a claimant and may reach OSS. Each test runs the real
//! controller against the Kubernetes API test server and the OSS emulator (which counts the
//! requests addressed to each bucket).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use oss_encryption_operator::api::grant::BucketEncryptionGrant;
use oss_encryption_operator::api::{BucketEncryption, FINALIZER};
use oss_encryption_operator::emulator::StoredRule;
use oss_encryption_operator::reconcile::grants::Tenancy;
use serde_json::{Value, json};
use support::operator::{CLOCK, Harness, NAMESPACE, SECRET, condition, message};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET};
use support::policy::{create_policy, wait_status};

/// The namespace of the second team (no grant unless a test makes one).
const OTHER: &str = "team-b";
/// No resync gets in the way where a test needs a trigger to be the only way forward.
const NEVER: Duration = Duration::from_secs(1800);

async fn grants_harness(buckets: &[&str], resync: Option<Duration>) -> Harness {
    let h = Harness::start_with(buckets, |settings| {
        settings.tenancy = Tenancy::Grants;
        settings.policy_secret_namespace = NAMESPACE.into();
        if let Some(resync) = resync {
            settings.resync_interval = resync;
        }
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(h.kube.client(), OTHER);
    let secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET},
        "stringData": {"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    h
}

fn grants(h: &Harness) -> Api<BucketEncryptionGrant> {
    Api::all(h.kube.client())
}

async fn create_grant(h: &Harness, name: &str, spec: Value) -> BucketEncryptionGrant {
    let grant = serde_json::from_value(json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionGrant",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    grants(h).create(&PostParams::default(), &grant).await.unwrap()
}

/// A resource of `namespace` (with that namespace's Secret unless `spec` says otherwise).
async fn create_in(h: &Harness, namespace: &str, name: &str, bucket: &str, spec: Value) -> BucketEncryption {
    let mut resource = h.resource(name, bucket, spec);
    resource.metadata.namespace = Some(namespace.into());
    let api: Api<BucketEncryption> = Api::namespaced(h.kube.client(), namespace);
    api.create(&PostParams::default(), &resource).await.unwrap()
}

/// Polls a resource of `namespace` until its Ready condition has this status and reason.
async fn wait_ready_in(
    h: &Harness,
    namespace: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> BucketEncryption {
    let api: Api<BucketEncryption> = Api::namespaced(h.kube.client(), namespace);
    let mut last = None;
    for _ in 0..400 {
        if let Ok(object) = api.get(name).await {
            if condition(&object, "Ready") == Some((status.into(), reason.into())) {
                return object;
            }
            last = Some(object);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{namespace}/{name} never reached Ready={status}/{reason}; last seen: {:#?}",
        last.map(|o| o.status)
    );
}

fn requests_to(h: &Harness, bucket: &str) -> u64 {
    h.oss
        .emulator
        .state()
        .bucket_requests()
        .get(bucket)
        .copied()
        .unwrap_or(0)
}

fn has_finalizer(object: &BucketEncryption) -> bool {
    object
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

fn algorithm(h: &Harness, bucket: &str) -> Option<String> {
    h.oss_rule(bucket).map(|(algorithm, _, _)| algorithm)
}

#[tokio::test]
async fn an_ungranted_namespace_created_first_does_not_stop_the_granted_owner() {
    let h = grants_harness(&["payments-data"], None).await;
    create_grant(
        &h,
        "team-a",
        json!({"namespaces": [NAMESPACE], "buckets": ["payments-*"]}),
    )
    .await;
    // team-b has no grant: its resource comes first (the oldest) and asks for a weaker rule.
    create_in(
        &h,
        OTHER,
        "squatter",
        "payments-data",
        json!({"algorithm": "SM4"}),
    )
    .await;
    let squatter = wait_ready_in(&h, OTHER, "squatter", "False", "NotPermitted").await;
    let why = message(&squatter, "Ready");
    assert!(
        why.contains("namespace team-b")
            && why.contains("payments-data")
            && why.contains("namespaces: [team-b]"),
        "{why}"
    );
    assert_eq!(requests_to(&h, "payments-data"), 0, "no OSS request");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.create("owner", "payments-data", json!({"algorithm": "KMS"}))
        .await;
    h.wait_ready("owner", "True", "Applied").await;
    assert_eq!(algorithm(&h, "payments-data").as_deref(), Some("KMS"));
    // The older, unpermitted resource is still NotPermitted (not Conflict, not the owner).
    let squatter = wait_ready_in(&h, OTHER, "squatter", "False", "NotPermitted").await;
    assert!(!has_finalizer(&squatter));
}

#[tokio::test]
async fn a_bucket_outside_the_patterns_is_not_permitted_and_never_asked() {
    let h = grants_harness(&["payments-data", "web-assets"], None).await;
    create_grant(
        &h,
        "team-a",
        json!({"namespaces": [NAMESPACE], "buckets": ["payments-*", CLOCK]}),
    )
    .await;
    h.start_clock().await;
    h.create(
        "stray",
        "web-assets",
        json!({"algorithm": "AES256", "deletionPolicy": "Delete"}),
    )
    .await;
    let stray = h.wait_ready("stray", "False", "NotPermitted").await;
    let why = message(&stray, "Ready");
    assert!(
        why.contains("namespace team-a may not claim bucket web-assets")
            && why.contains("buckets: [web-assets]"),
        "{why}"
    );
    assert!(!has_finalizer(&stray), "no finalizer for what may not be touched");
    // The controller keeps working (the clock resyncs) and the stray bucket is never asked.
    h.ticks(3).await;
    assert_eq!(
        requests_to(&h, "web-assets"),
        0,
        "zero OSS requests for web-assets"
    );
    assert!(
        h.metrics
            .encode()
            .lines()
            .any(|l| l == "oss_encryption_operator_not_permitted_resources 1"),
        "{}",
        h.metrics.encode()
    );
    // Deleting it (deletionPolicy Delete) removes nothing either.
    h.api.delete("stray", &DeleteParams::default()).await.unwrap();
    h.wait_gone("stray").await;
    assert_eq!(requests_to(&h, "web-assets"), 0);
}

#[tokio::test]
async fn the_operators_credentials_need_a_grant_that_allows_them() {
    let mut h = grants_harness(&["payments-own", "payments-shared"], None).await;
    h.stop_controller().await;
    h.operator_credentials = Some(h.oss.credentials.clone());
    h.start_controller();
    create_grant(
        &h,
        "team-a",
        json!({"namespaces": [NAMESPACE], "buckets": ["payments-*"]}),
    )
    .await;
    h.create("own-secret", "payments-own", json!({})).await;
    h.create("no-secret", "payments-shared", json!({"credentials": null}))
        .await;
    h.wait_ready("own-secret", "True", "Applied").await;
    let refused = h.wait_ready("no-secret", "False", "NotPermitted").await;
    let why = message(&refused, "Ready");
    assert!(
        why.contains("not with the operator's credentials") && why.contains("operatorCredentials: Allow"),
        "{why}"
    );
    assert_eq!(requests_to(&h, "payments-shared"), 0);
    assert_eq!(algorithm(&h, "payments-shared"), None);
    // The admin allows it: the resource is re-triggered and uses the operator's credentials.
    grants(&h)
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"operatorCredentials": "Allow"}})),
        )
        .await
        .unwrap();
    h.wait_ready("no-secret", "True", "Applied").await;
    assert_eq!(algorithm(&h, "payments-shared").as_deref(), Some("AES256"));
}

#[tokio::test]
async fn revoking_a_grant_stops_writes_and_retains_the_rule() {
    let h = grants_harness(&["payments-kept"], None).await;
    create_grant(
        &h,
        "team-a",
        json!({"namespaces": [NAMESPACE], "buckets": ["payments-*"]}),
    )
    .await;
    create_grant(
        &h,
        "clock",
        json!({"namespaces": [NAMESPACE], "buckets": [CLOCK]}),
    )
    .await;
    h.start_clock().await;
    h.create(
        "owner",
        "payments-kept",
        json!({"algorithm": "AES256", "deletionPolicy": "Delete"}),
    )
    .await;
    h.wait_for("owner", "applied with its finalizer", |o| {
        condition(o, "Ready").is_some_and(|(s, _)| s == "True") && has_finalizer(o)
    })
    .await;
    grants(&h)
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    let revoked = h
        .wait_for("owner", "NotPermitted without its finalizer", |o| {
            condition(o, "Ready") == Some(("False".into(), "NotPermitted".into())) && !has_finalizer(o)
        })
        .await;
    assert!(message(&revoked, "Ready").contains("payments-kept"));
    assert_eq!(
        algorithm(&h, "payments-kept").as_deref(),
        Some("AES256"),
        "the rule is kept"
    );
    // The rule changed behind the operator's back is no longer its business.
    let writes = h.oss.writes();
    h.oss.emulator.state().set_rule(
        "payments-kept",
        Some(StoredRule {
            algorithm: "SM4".into(),
            ..StoredRule::default()
        }),
    );
    h.ticks(3).await;
    assert_eq!(h.oss.writes(), writes, "no write after the revocation");
    assert_eq!(algorithm(&h, "payments-kept").as_deref(), Some("SM4"));
    // Deleting it (deletionPolicy Delete) never removes the rule.
    h.api.delete("owner", &DeleteParams::default()).await.unwrap();
    h.wait_gone("owner").await;
    assert_eq!(
        h.oss.emulator.state().total("DeleteBucketEncryption"),
        0,
        "revoking never strips encryption"
    );
    assert_eq!(algorithm(&h, "payments-kept").as_deref(), Some("SM4"));
}

#[tokio::test]
async fn creating_a_grant_retriggers_a_not_permitted_resource_promptly() {
    let h = grants_harness(&["payments-late"], Some(NEVER)).await;
    h.create("waiting", "payments-late", json!({})).await;
    h.wait_ready("waiting", "False", "NotPermitted").await;
    assert_eq!(requests_to(&h, "payments-late"), 0);
    let started = std::time::Instant::now();
    create_grant(
        &h,
        "team-a",
        json!({"namespaces": [NAMESPACE], "buckets": ["payments-?ate"]}),
    )
    .await;
    h.wait_ready("waiting", "True", "Applied").await;
    println!("applied {:?} after the grant was created", started.elapsed());
    // The operator reports the grant as in force.
    for _ in 0..400 {
        let grant = grants(&h).get("team-a").await.unwrap();
        let ready = grant
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if let Some(ready) = ready {
            assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Valid"));
            assert!(ready.message.contains("payments-?ate"), "{}", ready.message);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the grant never got a Ready condition");
}

#[tokio::test]
async fn an_invalid_grant_grants_nothing_and_says_so() {
    let h = grants_harness(&["payments-x"], Some(NEVER)).await;
    // Admission bypassed (a grant stored before a stricter CRD): the operator checks again.
    h.kube.set_admission(false);
    create_grant(
        &h,
        "broken",
        json!({"namespaces": [NAMESPACE, "Not_A_Namespace"], "buckets": ["payments-*"]}),
    )
    .await;
    h.kube.set_admission(true);
    h.create("hopeful", "payments-x", json!({})).await;
    h.wait_ready("hopeful", "False", "NotPermitted").await;
    for _ in 0..400 {
        let grant = grants(&h).get("broken").await.unwrap();
        if let Some(ready) = grant
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        {
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", "InvalidSpec")
            );
            assert!(ready.message.contains("spec.namespaces[1]"), "{}", ready.message);
            assert_eq!(requests_to(&h, "payments-x"), 0);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the grant never got a Ready condition");
}

#[tokio::test]
async fn a_policy_lists_who_exempts_which_bucket_and_needs_no_grant() {
    let h = grants_harness(&["payments-owned", "payments-squatted"], None).await;
    create_grant(
        &h,
        "team-a",
        json!({"namespaces": [NAMESPACE], "buckets": ["payments-owned"]}),
    )
    .await;
    h.create("owner", "payments-owned", json!({})).await;
    h.wait_ready("owner", "True", "Applied").await;
    create_in(&h, OTHER, "squatter", "payments-squatted", json!({})).await;
    wait_ready_in(&h, OTHER, "squatter", "False", "NotPermitted").await;
    // The policy (no grant needed) exempts the permitted owner's bucket only: the unpermitted
    // resource is no claimant, so its bucket is the policy's.
    create_policy(
        &h,
        "audit",
        json!({"selector": {"namePrefix": "payments-"}, "rule": {"algorithm": "KMS"}}),
    )
    .await;
    let status = wait_status(&h, "audit", "a pass over both buckets", |s| {
        s["buckets"]["selected"] == 2
    })
    .await;
    assert_eq!(
        status["managedByResource"],
        json!([{"bucket": "payments-owned", "resource": "team-a/owner"}]),
        "{status:#}"
    );
    assert_eq!(status["buckets"]["managedByResource"], 1);
    assert_eq!(
        status["nonCompliant"],
        json!([{"bucket": "payments-squatted", "region": support::oss::REGION, "observed": "None"}]),
        "{status:#}"
    );
}
