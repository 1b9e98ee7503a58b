//! The safety nets, black-box (real controller + Kubernetes API test server + emulator with
//! KMS): the KMS key pre-flight (a bogus key, a key disabled under an in-sync bucket, a check
//! that cannot run, the cache bounding KMS calls) and the downgrade guard (a spec edit, a new
//! resource over a stronger bucket, drift to a stronger rule).

mod support;

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use oss_encryption_operator::emulator::{KmsKey, StoredRule};
use serde_json::json;
use support::operator::{Harness, message};
use support::oss::{ACCESS_KEY_ID, REGION};

fn enabled() -> KmsKey {
    KmsKey {
        region: REGION.into(),
        ..KmsKey::default()
    }
}

fn kms_rule(key: &str) -> Option<(String, String, String)> {
    Some(("KMS".into(), key.into(), String::new()))
}

#[tokio::test]
async fn a_bogus_key_is_refused_before_any_write() {
    let h = Harness::start_with_preflight(&["typo-bucket"], Duration::from_secs(60)).await;
    h.create(
        "typo",
        "typo-bucket",
        json!({"algorithm": "KMS", "kmsMasterKeyId": "key-tpyo"}),
    )
    .await;
    let object = h.wait_ready("typo", "False", "KeyNotUsable").await;
    let text = message(&object, "Ready");
    assert!(
        text.contains("key-tpyo") && text.contains("does not know"),
        "{text}"
    );
    assert!(text.contains("nothing is written"), "{text}");
    assert_eq!(h.oss.writes(), 0, "no PUT with a key OSS cannot use");
    assert_eq!(h.oss_rule("typo-bucket"), None);
    let events = h.events("typo").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "KeyNotUsable" && note.contains("key-tpyo")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_key_disabled_under_an_in_sync_bucket_is_reported_then_recovers() {
    let h = Harness::start_with_preflight(&["live-bucket"], Duration::from_millis(100)).await;
    h.oss.emulator.state().put_kms_key("key-live", enabled());
    h.start_clock().await;
    h.create(
        "live",
        "live-bucket",
        json!({"algorithm": "KMS", "kmsMasterKeyId": "key-live"}),
    )
    .await;
    h.wait_ready("live", "True", "Applied").await;
    h.ticks(2).await;
    h.wait_in_sync("live").await;
    let writes_before = h.oss.writes();

    h.oss.emulator.state().put_kms_key(
        "key-live",
        KmsKey {
            state: "Disabled".into(),
            ..enabled()
        },
    );
    let object = h.wait_ready("live", "False", "KeyNotUsable").await;
    let text = message(&object, "Ready");
    assert!(
        text.contains("Disabled") && text.contains("uploads will fail"),
        "{text}"
    );
    assert!(
        h.event_reasons("live")
            .await
            .contains(&"KeyNotUsable".to_string())
    );
    h.ticks(3).await;
    assert_eq!(h.oss.writes(), writes_before, "no OSS write while the key is bad");
    assert_eq!(
        h.oss_rule("live-bucket"),
        kms_rule("key-live"),
        "the rule is left alone"
    );

    h.oss.emulator.state().put_kms_key("key-live", enabled());
    h.wait_in_sync("live").await;
    assert_eq!(h.oss.writes(), writes_before, "recovery needs no write either");
}

#[tokio::test]
async fn a_key_in_another_region_or_of_the_wrong_kind_is_not_usable() {
    let h = Harness::start_with_preflight(&["far-bucket", "sign-bucket"], Duration::from_secs(60)).await;
    h.oss.emulator.state().put_kms_key(
        "key-far",
        KmsKey {
            region: "cn-beijing".into(),
            ..enabled()
        },
    );
    h.oss.emulator.state().put_kms_key(
        "key-sign",
        KmsKey {
            spec: "RSA_2048".into(),
            usage: "SIGN/VERIFY".into(),
            ..enabled()
        },
    );
    h.create(
        "far",
        "far-bucket",
        json!({"algorithm": "KMS", "kmsMasterKeyId": "key-far"}),
    )
    .await;
    h.create(
        "sign",
        "sign-bucket",
        json!({"algorithm": "KMS", "kmsMasterKeyId": "key-sign"}),
    )
    .await;
    let far = h.wait_ready("far", "False", "KeyNotUsable").await;
    assert!(
        message(&far, "Ready").contains("cn-beijing"),
        "{}",
        message(&far, "Ready")
    );
    let sign = h.wait_ready("sign", "False", "KeyNotUsable").await;
    let text = message(&sign, "Ready");
    assert!(
        text.contains("SIGN/VERIFY") && text.contains("RSA_2048"),
        "{text}"
    );
    assert_eq!(h.oss.writes(), 0);
}

#[tokio::test]
async fn a_check_that_cannot_run_never_passes() {
    // A refusal is a definite answer, cached like any other: a short TTL lets the fix show soon.
    let h = Harness::start_with_preflight(&["denied-bucket"], Duration::from_millis(200)).await;
    h.oss.emulator.state().put_kms_key("key-ok", enabled());
    h.oss.emulator.state().set_kms_denied(ACCESS_KEY_ID, true);
    h.create(
        "denied",
        "denied-bucket",
        json!({"algorithm": "KMS", "kmsMasterKeyId": "key-ok"}),
    )
    .await;
    let object = h.wait_ready("denied", "False", "KeyCheckFailed").await;
    let text = message(&object, "Ready");
    assert!(
        text.contains("Forbidden.NoPermission") && text.contains("kms:DescribeKey"),
        "{text}"
    );
    assert_eq!(h.oss.writes(), 0, "an unchecked key is never written");

    h.oss.emulator.state().set_kms_denied(ACCESS_KEY_ID, false);
    h.wait_ready("denied", "True", "Applied").await;
    assert_eq!(h.oss_rule("denied-bucket"), kms_rule("key-ok"));
}

#[tokio::test]
async fn a_hundred_resources_sharing_two_keys_cost_two_kms_calls_per_ttl() {
    let names: Vec<String> = (0..100).map(|i| format!("shared-key-{i:03}")).collect();
    let buckets: Vec<&str> = names.iter().map(String::as_str).collect();
    let h = Harness::start_with_preflight(&buckets, Duration::from_secs(3600)).await;
    h.oss.emulator.state().put_kms_key("key-even", enabled());
    h.oss.emulator.state().put_kms_key("key-odd", enabled());
    h.start_clock().await;
    for (i, name) in names.iter().enumerate() {
        let key = if i % 2 == 0 { "key-even" } else { "key-odd" };
        h.create(name, name, json!({"algorithm": "KMS", "kmsMasterKeyId": key}))
            .await;
    }
    for name in &names {
        h.wait_for(name, "Ready=True", |o| {
            support::operator::condition(o, "Ready").is_some_and(|(s, _)| s == "True")
        })
        .await;
    }
    let gets_before = h.oss.emulator.state().total("GetBucketEncryption");
    h.ticks(3).await;
    let state = h.oss.emulator.state();
    assert!(
        state.total("GetBucketEncryption") >= gets_before + 100,
        "the fleet was resynced meanwhile"
    );
    assert_eq!(
        state.total("DescribeKey"),
        2,
        "one DescribeKey per key for the whole fleet and its resyncs"
    );
    assert_eq!(
        state.total("PutBucketEncryption"),
        100 + 1,
        "each bucket once, and the clock's"
    );
}

#[tokio::test]
async fn a_spec_edit_to_a_weaker_rule_is_blocked_until_allowed() {
    let h = Harness::start(&["edit-bucket"]).await;
    h.create("edit", "edit-bucket", json!({"algorithm": "KMS"})).await;
    h.wait_ready("edit", "True", "Applied").await;
    let writes_before = h.oss.writes();
    // Admission refuses this edit (the CRD's transition rule); a cluster whose CRD predates the
    // rule, or a direct etcd write, gets it through: the controller is the second line.
    h.kube.set_admission(false);
    h.api
        .patch(
            "edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"algorithm": "None"}})),
        )
        .await
        .unwrap();
    let object = h.wait_ready("edit", "False", "DowngradeBlocked").await;
    let text = message(&object, "Ready");
    assert!(
        text.contains("bucket has KMS") && text.contains("allowDowngrade: true"),
        "{text}"
    );
    assert_eq!(object.status.as_ref().unwrap().observed_generation, Some(2));
    assert!(
        h.event_reasons("edit")
            .await
            .contains(&"DowngradeBlocked".to_string())
    );
    assert_eq!(h.oss.writes(), writes_before, "zero writes");
    assert_eq!(h.oss_rule("edit-bucket"), kms_rule(""), "the bucket keeps KMS");

    h.kube.set_admission(true);
    h.api
        .patch(
            "edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"allowDowngrade": true}})),
        )
        .await
        .unwrap();
    h.wait_ready("edit", "True", "Applied").await;
    assert_eq!(h.oss_rule("edit-bucket"), None, "allowed: the rule is removed");
}

#[tokio::test]
async fn a_new_resource_never_weakens_an_encrypted_bucket() {
    let h = Harness::start(&["kms-bucket"]).await;
    h.oss.emulator.state().set_rule(
        "kms-bucket",
        Some(StoredRule {
            algorithm: "KMS".into(),
            kms_master_key_id: "key-theirs".into(),
            ..StoredRule::default()
        }),
    );
    h.create("adopt", "kms-bucket", json!({"algorithm": "AES256"}))
        .await;
    let object = h.wait_ready("adopt", "False", "DowngradeBlocked").await;
    let observed = object.status.as_ref().unwrap().observed.clone().unwrap();
    assert_eq!(
        (observed.algorithm.as_str(), observed.kms_master_key_id.as_str()),
        ("KMS", "key-theirs")
    );
    assert_eq!(h.oss.writes(), 0);
    assert_eq!(h.oss_rule("kms-bucket"), kms_rule("key-theirs"));
}

#[tokio::test]
async fn drift_to_a_stronger_rule_is_not_corrected_downwards() {
    let h = Harness::start(&["drift-bucket"]).await;
    h.create("drift", "drift-bucket", json!({"algorithm": "AES256"}))
        .await;
    h.wait_ready("drift", "True", "Applied").await;
    h.oss.emulator.state().set_rule(
        "drift-bucket",
        Some(StoredRule {
            algorithm: "KMS".into(),
            ..StoredRule::default()
        }),
    );
    h.wait_ready("drift", "False", "DowngradeBlocked").await;
    assert_eq!(
        h.oss.emulator.state().total("PutBucketEncryption"),
        1,
        "only the first apply"
    );
    assert_eq!(h.oss_rule("drift-bucket"), kms_rule(""));
    // Drift to a weaker rule is still corrected.
    h.oss.emulator.state().set_rule("drift-bucket", None);
    h.wait_ready("drift", "True", "Applied").await;
    assert_eq!(
        h.oss_rule("drift-bucket"),
        Some(("AES256".into(), String::new(), String::new()))
    );
}
