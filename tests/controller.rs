//! The real controller against the Kubernetes API test server and the OSS emulator over HTTP:
//! every behaviour asserted on OSS state, on the object's status, and on request counters.

mod support;

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use oss_encryption_operator::api::FINALIZER;
use oss_encryption_operator::emulator::{Faults, StoredRule};
use serde_json::json;
use support::operator::{Harness, condition, is_in_sync, message};

fn rule(algorithm: &str, key: &str, data: &str) -> Option<(String, String, String)> {
    Some((algorithm.into(), key.into(), data.into()))
}

#[tokio::test]
async fn aes256_is_applied_then_reported_in_sync() {
    let h = Harness::start(&["aes-bucket"]).await;
    h.create("aes", "aes-bucket", json!({})).await;
    let object = h.wait_in_sync("aes").await;
    assert_eq!(h.oss_rule("aes-bucket"), rule("AES256", "", ""));
    let status = object.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.observed.unwrap().algorithm, "AES256");
    assert_eq!(status.last_request_id.as_ref().map(String::len), Some(24));
    assert!(status.last_sync_time.is_some());
    assert_eq!(
        condition(&h.api.get("aes").await.unwrap(), "Synced"),
        Some(("True".into(), "ReconcileSuccess".into()))
    );
    assert!(h.event_reasons("aes").await.contains(&"Applied".to_string()));
    assert_eq!(
        h.oss.emulator.state().counters()["PutBucketEncryption"][&200],
        1,
        "written once"
    );
}

#[tokio::test]
async fn every_algorithm_and_none() {
    let buckets = ["kms-managed", "kms-key", "kms-sm4", "sm4-bucket", "none-bucket"];
    let h = Harness::start(&buckets).await;
    h.oss.emulator.state().set_rule(
        "none-bucket",
        Some(StoredRule {
            algorithm: "AES256".into(),
            ..StoredRule::default()
        }),
    );
    h.create("a", "kms-managed", json!({"algorithm": "KMS"})).await;
    h.create(
        "b",
        "kms-key",
        json!({"algorithm": "KMS", "kmsMasterKeyId": "cmk-1"}),
    )
    .await;
    h.create(
        "c",
        "kms-sm4",
        json!({"algorithm": "KMS", "kmsMasterKeyId": "cmk-2", "kmsDataEncryption": "SM4"}),
    )
    .await;
    h.create(
        "d",
        "sm4-bucket",
        json!({"algorithm": "SM4", "signatureVersion": "V1"}),
    )
    .await;
    // Removing AES256 is a downgrade: allowed explicitly (the guard has its own tests).
    h.create(
        "e",
        "none-bucket",
        json!({"algorithm": "None", "allowDowngrade": true}),
    )
    .await;
    for name in ["a", "b", "c", "d", "e"] {
        h.wait_in_sync(name).await;
    }
    assert_eq!(h.oss_rule("kms-managed"), rule("KMS", "", ""));
    assert_eq!(h.oss_rule("kms-key"), rule("KMS", "cmk-1", ""));
    assert_eq!(h.oss_rule("kms-sm4"), rule("KMS", "cmk-2", "SM4"));
    assert_eq!(h.oss_rule("sm4-bucket"), rule("SM4", "", ""));
    assert_eq!(h.oss_rule("none-bucket"), None, "None removed the existing rule");
    assert!(h.event_reasons("e").await.contains(&"Deleted".to_string()));
}

#[tokio::test]
async fn a_spec_change_is_applied_and_its_generation_observed() {
    let h = Harness::start(&["changing"]).await;
    h.create("changing", "changing", json!({})).await;
    h.wait_in_sync("changing").await;
    h.api
        .patch(
            "changing",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"algorithm": "KMS", "kmsMasterKeyId": "k2"}})),
        )
        .await
        .unwrap();
    let object = h
        .wait_for("changing", "generation 2 in sync", |o| {
            o.metadata.generation == Some(2) && is_in_sync(o)
        })
        .await;
    assert_eq!(h.oss_rule("changing"), rule("KMS", "k2", ""));
    assert_eq!(
        object.status.unwrap().drift_corrections,
        0,
        "a spec change is not drift"
    );
}

#[tokio::test]
async fn drift_is_corrected_in_manage_mode() {
    let h = Harness::start(&["drifty"]).await;
    h.create("drifty", "drifty", json!({})).await;
    h.wait_in_sync("drifty").await;
    h.oss.emulator.state().set_rule(
        "drifty",
        Some(StoredRule {
            algorithm: "SM4".into(),
            ..StoredRule::default()
        }),
    );
    h.wait_for("drifty", "one drift correction", |o| {
        o.status.as_ref().is_some_and(|s| s.drift_corrections == 1)
    })
    .await;
    assert_eq!(h.oss_rule("drifty"), rule("AES256", "", ""));
    let events = h.events("drifty").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "DriftCorrected"
                && note.contains("bucket has SM4, spec wants AES256")),
        "{events:?}"
    );
}

#[tokio::test]
async fn drift_is_only_reported_in_observe_mode() {
    let h = Harness::start(&["watched"]).await;
    h.oss.emulator.state().set_rule(
        "watched",
        Some(StoredRule {
            algorithm: "SM4".into(),
            ..StoredRule::default()
        }),
    );
    h.create(
        "watched",
        "watched",
        json!({"managementPolicy": "Observe", "deletionPolicy": "Delete"}),
    )
    .await;
    // Observe mode's job is to report: Ready=True/Observed, the drift is InSync's answer, and
    // kstatus sees a finished resource (neither Reconciling nor Stalled).
    let object = h.wait_ready("watched", "True", "Observed").await;
    assert_eq!(
        condition(&object, "InSync"),
        Some(("False".into(), "Drifted".into()))
    );
    assert!(message(&object, "InSync").contains("bucket has SM4, spec wants AES256"));
    assert_eq!(
        condition(&object, "Reconciling").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(condition(&object, "Stalled").map(|c| c.0), Some("False".into()));
    assert!(
        object.metadata.finalizers.unwrap_or_default().is_empty(),
        "Observe never takes a finalizer"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let counters = h.oss.emulator.state().counters();
    assert!(
        !counters.contains_key("PutBucketEncryption") && !counters.contains_key("DeleteBucketEncryption"),
        "{counters:?}"
    );
    assert_eq!(h.oss_rule("watched"), rule("SM4", "", ""));
    assert!(
        h.event_reasons("watched")
            .await
            .contains(&"DriftDetected".to_string())
    );
}

#[tokio::test]
async fn a_write_is_reported_once_and_the_resyncs_that_confirm_it_write_nothing() {
    let h = Harness::start(&["written"]).await;
    h.create("written", "written", json!({})).await;
    let applied = h.wait_in_sync("written").await;
    assert_eq!(
        condition(&applied, "Ready"),
        Some(("True".into(), "Applied".into()))
    );
    assert_eq!(h.oss_rule("written"), rule("AES256", "", ""));
    h.oss.emulator.state().reset_counters();
    h.kube.reset_counters();
    // Count-based: three resyncs that find the rule just applied (the fourth has started).
    h.wait_requests("written", 4).await;
    assert_eq!(
        h.kube.writes(),
        0,
        "relabelling Applied as InSync says nothing new: {:?}",
        h.kube.counters()
    );
    let later = h.api.get("written").await.unwrap();
    assert_eq!(later.status, applied.status, "the write's report stands");
}

#[tokio::test]
async fn in_sync_resyncs_cost_one_get_and_no_kubernetes_writes() {
    let h = Harness::start(&["steady-1", "steady-2"]).await;
    h.create("steady-1", "steady-1", json!({})).await;
    h.create("steady-2", "steady-2", json!({"algorithm": "KMS"}))
        .await;
    h.wait_in_sync("steady-1").await;
    h.wait_in_sync("steady-2").await;
    h.oss.emulator.state().reset_counters();
    h.kube.reset_counters();
    // Count-based: wait for ten resyncs of each object, however long the machine takes.
    let per_bucket = |bucket: &str| {
        h.oss
            .emulator
            .state()
            .bucket_requests()
            .get(bucket)
            .copied()
            .unwrap_or(0)
    };
    for _ in 0..600 {
        if per_bucket("steady-1") >= 10 && per_bucket("steady-2") >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (one, two) = (per_bucket("steady-1"), per_bucket("steady-2"));
    let counters = h.oss.emulator.state().counters();
    println!(
        "in sync: {one} and {two} requests for the two objects; kube writes {}",
        h.kube.writes()
    );
    assert!(one >= 10 && two >= 10, "both objects keep resyncing");
    assert_eq!(counters.len(), 1, "only GETs: {counters:?}");
    assert_eq!(
        h.oss.emulator.state().total("GetBucketEncryption"),
        one + two,
        "one GET per request, nothing else"
    );
    assert!(
        one.max(two) <= 2 * one.min(two),
        "both resync at the same interval: {one} vs {two}"
    );
    assert_eq!(
        h.kube.writes(),
        0,
        "no Kubernetes writes while in sync: {:?}",
        h.kube.counters()
    );
}

#[tokio::test]
async fn deletion_with_retain_leaves_the_rule() {
    let h = Harness::start(&["kept"]).await;
    h.create("kept", "kept", json!({})).await;
    let object = h.wait_in_sync("kept").await;
    assert!(
        object.metadata.finalizers.unwrap_or_default().is_empty(),
        "Retain needs no finalizer"
    );
    h.api.delete("kept", &DeleteParams::default()).await.unwrap();
    h.wait_gone("kept").await;
    assert_eq!(h.oss_rule("kept"), rule("AES256", "", ""));
}

#[tokio::test]
async fn deletion_with_delete_removes_the_rule_then_the_object() {
    let h = Harness::start(&["removed"]).await;
    h.create("removed", "removed", json!({"deletionPolicy": "Delete"}))
        .await;
    h.wait_for("removed", "the finalizer", |o| {
        o.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
    })
    .await;
    h.wait_in_sync("removed").await;
    h.api.delete("removed", &DeleteParams::default()).await.unwrap();
    h.wait_gone("removed").await;
    assert_eq!(h.oss_rule("removed"), None);
    assert_eq!(
        h.oss.emulator.state().counters()["DeleteBucketEncryption"][&204],
        1
    );
}

#[tokio::test]
async fn the_finalizer_follows_the_deletion_policy() {
    let h = Harness::start(&["flip"]).await;
    h.create("flip", "flip", json!({"deletionPolicy": "Delete"}))
        .await;
    h.wait_for("flip", "the finalizer", |o| {
        o.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.contains(&FINALIZER.to_string()))
    })
    .await;
    h.api
        .patch(
            "flip",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deletionPolicy": "Retain"}})),
        )
        .await
        .unwrap();
    h.wait_for("flip", "no finalizer", |o| {
        o.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty())
    })
    .await;
}

#[tokio::test]
async fn a_missing_bucket_does_not_block_deletion() {
    let h = Harness::start(&["vanishing"]).await;
    h.create("vanishing", "vanishing", json!({"deletionPolicy": "Delete"}))
        .await;
    h.wait_in_sync("vanishing").await;
    h.oss.emulator.state().delete_bucket("vanishing");
    h.api.delete("vanishing", &DeleteParams::default()).await.unwrap();
    h.wait_gone("vanishing").await;
}

#[tokio::test]
async fn a_wrong_secret_is_access_denied_with_the_request_id() {
    let h = Harness::start(&["locked"]).await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(h.kube.client(), "team-a");
    let secret = serde_json::from_value(json!({"metadata": {"name": "wrong"},
        "stringData": {"accessKeyId": support::oss::ACCESS_KEY_ID, "accessKeySecret": "not-the-secret"}}))
    .unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    h.create(
        "locked",
        "locked",
        json!({"credentials": {"secretRef": {"name": "wrong"}}}),
    )
    .await;
    let object = h.wait_ready("locked", "False", "AccessDenied").await;
    let text = message(&object, "Ready");
    assert!(
        text.contains("SignatureDoesNotMatch") && text.contains("request id"),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"), "no secret in conditions");
    assert_eq!(condition(&object, "Synced").unwrap().1, "AccessDenied");
    assert!(object.status.unwrap().last_request_id.is_some());
}

#[tokio::test]
async fn a_missing_secret_makes_no_oss_call() {
    let h = Harness::start(&["nosecret"]).await;
    h.create(
        "nosecret",
        "nosecret",
        json!({"credentials": {"secretRef": {"name": "absent"}}}),
    )
    .await;
    let object = h.wait_ready("nosecret", "False", "CredentialsNotFound").await;
    assert!(message(&object, "Ready").contains("team-a/absent"));
    assert!(
        h.oss.emulator.state().counters().is_empty(),
        "no OSS call without credentials"
    );
    // Creating the Secret is picked up by the capped retry (no watch on Secrets needed).
    assert!(h.kube.count("watch", "secrets") == 0 && h.kube.count("list", "secrets") == 0);
}

#[tokio::test]
async fn a_missing_bucket_is_bucket_not_found() {
    let h = Harness::start(&[]).await;
    h.start_clock().await;
    h.create("ghost", "ghost-bucket", json!({})).await;
    let object = h.wait_ready("ghost", "False", "BucketNotFound").await;
    let text = message(&object, "Ready");
    assert!(
        text.contains("NoSuchBucket") && text.contains("request id"),
        "{text}"
    );
    h.oss.emulator.state().reset_counters();
    h.ticks(5).await;
    let gets = h
        .oss
        .emulator
        .state()
        .bucket_requests()
        .get("ghost-bucket")
        .copied()
        .unwrap_or(0);
    assert!(
        gets <= 1,
        "{gets} GETs for a missing bucket during 5 resyncs of another: no hot loop"
    );
}

#[tokio::test]
async fn a_denied_key_is_access_denied_without_a_hot_loop() {
    let h = Harness::start(&["denied"]).await;
    h.oss
        .emulator
        .state()
        .set_access_denied("denied", support::oss::ACCESS_KEY_ID, true);
    h.start_clock().await;
    h.create("denied", "denied", json!({})).await;
    h.wait_ready("denied", "False", "AccessDenied").await;
    h.oss.emulator.state().reset_counters();
    h.ticks(7).await;
    let gets = h
        .oss
        .emulator
        .state()
        .bucket_requests()
        .get("denied")
        .copied()
        .unwrap_or(0);
    assert!(
        gets <= 2,
        "{gets} GETs under a persistent AccessDenied during 7 resyncs of another"
    );
}

#[tokio::test]
async fn an_endpoint_outside_the_allow_list_makes_no_oss_call() {
    let h = Harness::start(&["fenced"]).await;
    h.create("fenced", "fenced", json!({"endpoint": "https://oss.example.com"}))
        .await;
    let object = h.wait_ready("fenced", "False", "EndpointNotAllowed").await;
    assert!(message(&object, "Ready").contains("oss.example.com"));
    assert!(h.oss.emulator.state().counters().is_empty());
}

#[tokio::test]
async fn an_invalid_spec_is_reported_without_retries() {
    let h = Harness::start(&["invalid"]).await;
    // Admission would refuse this object: bypass it, as for an object stored before a
    // stricter CRD (the controller's own validation is what is tested here).
    h.kube.set_admission(false);
    h.start_clock().await;
    h.kube.reset_counters();
    // The test server has no admission, as if the CEL rules were bypassed.
    h.create("invalid", "invalid", json!({"kmsMasterKeyId": "k"}))
        .await;
    let object = h.wait_ready("invalid", "False", "InvalidSpec").await;
    assert!(message(&object, "Ready").contains("spec.kmsMasterKeyId"));
    h.ticks(4).await;
    assert!(!h.oss.emulator.state().bucket_requests().contains_key("invalid"));
    assert_eq!(
        h.kube.count("patch", "bucketencryptions/status"),
        1,
        "reported once, not retried (the clock is in sync: it writes nothing)"
    );
}

#[tokio::test]
async fn a_malformed_object_does_not_stall_the_others() {
    let h = Harness::start(&["healthy"]).await;
    // Admission would refuse this object: bypass it, as for an object stored before a
    // stricter CRD (the controller's own validation is what is tested here).
    h.kube.set_admission(false);
    h.start_clock().await;
    // A value no type accepts (admission bypassed): the object cannot be deserialised.
    let raw: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
        h.kube.client(),
        "team-a",
        &kube::core::ApiResource::erase::<oss_encryption_operator::api::BucketEncryption>(&()),
    );
    let mut malformed: kube::core::DynamicObject = serde_json::from_value(
        serde_json::to_value(h.resource("malformed", "malformed", json!({}))).unwrap(),
    )
    .unwrap();
    malformed.data["spec"]["algorithm"] = json!("DES");
    raw.create(&Default::default(), &malformed).await.unwrap();
    h.create("healthy", "healthy", json!({})).await;
    h.wait_in_sync("healthy").await;
    let mut reported = None;
    for _ in 0..200 {
        let object = raw.get("malformed").await.unwrap();
        if object.data["status"]["conditions"][0]["reason"] == "InvalidSpec" {
            reported = Some(object);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let object = reported.expect("the malformed object gets InvalidSpec");
    assert!(
        object.data["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("DES")
    );
    let writes = h.kube.count("patch", "bucketencryptions/status");
    h.ticks(3).await;
    assert_eq!(
        h.kube.count("patch", "bucketencryptions/status"),
        writes,
        "reported once, then quiet"
    );
}

#[tokio::test]
async fn the_newer_of_two_objects_for_one_bucket_is_a_conflict() {
    let h = Harness::start(&["shared"]).await;
    h.create("first", "shared", json!({})).await;
    h.wait_in_sync("first").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creationTimestamp has second resolution
    h.create("second", "shared", json!({"algorithm": "SM4"})).await;
    let object = h.wait_ready("second", "False", "Conflict").await;
    assert!(message(&object, "Ready").contains("team-a/first"));
    let gets = h.oss.emulator.state().total("GetBucketEncryption");
    for _ in 0..400 {
        if h.oss.emulator.state().total("GetBucketEncryption") >= gets + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.oss_rule("shared"),
        rule("AES256", "", ""),
        "the newer object never wrote"
    );
}

#[tokio::test]
async fn injected_503s_and_dropped_watches_still_converge() {
    let names: Vec<String> = (0..8).map(|i| format!("flaky-{i}")).collect();
    let buckets: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::start(&buckets).await;
    h.oss.emulator.state().set_faults(Faults {
        throttle_rate: 0.3,
        ..Faults::default()
    });
    h.kube.set_faults(support::kube::KubeFaults {
        drop_watches_every: Some(Duration::from_millis(700)),
        ..Default::default()
    });
    for name in &names {
        h.create(name, name, json!({})).await;
    }
    for name in &names {
        h.wait_in_sync(name).await;
        assert_eq!(h.oss_rule(name), rule("AES256", "", ""));
    }
    assert!(
        h.oss.emulator.state().counters()["GetBucketEncryption"].contains_key(&503),
        "faults were injected"
    );
}

#[tokio::test]
async fn a_restarted_controller_loses_nothing() {
    let mut h = Harness::start(&["before", "during"]).await;
    h.create("before", "before", json!({})).await;
    h.wait_in_sync("before").await;
    h.stop_controller().await;
    h.create("during", "during", json!({"algorithm": "SM4"})).await;
    h.oss.emulator.state().set_rule("before", None);
    h.start_controller();
    h.wait_in_sync("during").await;
    h.wait_for("before", "a drift correction", |o| {
        o.status.as_ref().is_some_and(|s| s.drift_corrections == 1)
    })
    .await;
    assert_eq!(h.oss_rule("before"), rule("AES256", "", ""));
    assert_eq!(h.oss_rule("during"), rule("SM4", "", ""));
}

#[tokio::test]
async fn a_shutdown_right_after_start_still_stops() {
    let mut h = Harness::start(&[]).await;
    // Stopping at once used to leave kube's Controller waiting; the harness fails after 20 s.
    h.stop_controller().await;
}

#[tokio::test]
async fn operator_credentials_serve_resources_without_a_secret() {
    let mut h = Harness::start(&["own-creds", "no-creds"]).await;
    // Without operator credentials a resource without spec.credentials cannot be served.
    let mut document = serde_json::to_value(h.resource("no-creds", "no-creds", json!({}))).unwrap();
    document["spec"].as_object_mut().unwrap().remove("credentials");
    h.api
        .create(
            &Default::default(),
            &serde_json::from_value(document.clone()).unwrap(),
        )
        .await
        .unwrap();
    let object = h.wait_ready("no-creds", "False", "CredentialsNotFound").await;
    assert!(message(&object, "Ready").contains("allow-operator-credentials"));

    h.stop_controller().await;
    h.operator_credentials = Some(
        oss_encryption_operator::oss::Credentials::new(
            support::oss::ACCESS_KEY_ID,
            support::oss::ACCESS_KEY_SECRET,
        )
        .into(),
    );
    h.start_controller();
    document["metadata"]["name"] = json!("own-creds");
    document["spec"]["bucket"] = json!("own-creds");
    h.api
        .create(&Default::default(), &serde_json::from_value(document).unwrap())
        .await
        .unwrap();
    h.wait_in_sync("own-creds").await;
    assert_eq!(h.oss_rule("own-creds"), rule("AES256", "", ""));
}

#[tokio::test]
async fn namespaces_and_label_selectors_shard_the_fleet() {
    let h = Harness::start_with(&["mine", "unlabelled", "elsewhere"], |settings| {
        settings.namespaces = vec!["team-a".into()];
        settings.label_selector = Some("shard=a".into());
    })
    .await;
    let labelled = |name: &str, namespace: &str| {
        let mut document = serde_json::to_value(h.resource(name, name, json!({}))).unwrap();
        document["metadata"]["namespace"] = json!(namespace);
        if name != "unlabelled" {
            document["metadata"]["labels"] = json!({"shard": "a"});
        }
        serde_json::from_value::<oss_encryption_operator::api::BucketEncryption>(document).unwrap()
    };
    h.api
        .create(&Default::default(), &labelled("mine", "team-a"))
        .await
        .unwrap();
    h.api
        .create(&Default::default(), &labelled("unlabelled", "team-a"))
        .await
        .unwrap();
    let other: kube::Api<oss_encryption_operator::api::BucketEncryption> =
        kube::Api::namespaced(h.kube.client(), "team-b");
    other
        .create(&Default::default(), &labelled("elsewhere", "team-b"))
        .await
        .unwrap();
    h.wait_in_sync("mine").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(h.oss_rule("unlabelled"), None, "outside the label selector");
    assert_eq!(h.oss_rule("elsewhere"), None, "outside the namespace");
    assert!(h.api.get("unlabelled").await.unwrap().status.is_none());
    assert!(other.get("elsewhere").await.unwrap().status.is_none());
}

#[tokio::test]
async fn a_change_costs_one_get_one_put_and_one_status_write() {
    let h = Harness::start_with(&["counted", "counted-delete"], |s| {
        s.resync_interval = Duration::from_secs(3)
    })
    .await;
    h.kube.reset_counters();
    let gets = |h: &Harness| h.oss.emulator.state().total("GetBucketEncryption");
    h.create("counted", "counted", json!({})).await;
    h.wait_ready("counted", "True", "Applied").await;
    assert_eq!(gets(&h), 1);
    assert_eq!(h.oss.emulator.state().total("PutBucketEncryption"), 1);
    assert_eq!(h.kube.count("patch", "bucketencryptions/status"), 1);
    assert_eq!(
        h.kube.count("patch", "bucketencryptions"),
        0,
        "Retain: no finalizer write"
    );
    // The resyncs that confirm it cost one GET each and write nothing (Ready stays Applied).
    // GET, PUT, GET, GET: the second GET's reconcile has finished once the third starts.
    h.wait_requests("counted", 4).await;
    assert_eq!(h.kube.count("patch", "bucketencryptions/status"), 1);
    assert_eq!(h.oss.emulator.state().total("PutBucketEncryption"), 1);

    h.kube.reset_counters();
    h.oss.emulator.state().reset_counters();
    h.create(
        "counted-delete",
        "counted-delete",
        json!({"deletionPolicy": "Delete"}),
    )
    .await;
    h.wait_ready("counted-delete", "True", "Applied").await;
    assert_eq!(
        (gets(&h), h.oss.emulator.state().total("PutBucketEncryption")),
        (1, 1)
    );
    assert_eq!(
        h.kube.count("patch", "bucketencryptions"),
        1,
        "one finalizer write"
    );
    assert_eq!(h.kube.count("patch", "bucketencryptions/status"), 1);
}

/// `name{labels} value` lines of an exposition, as a map.
fn parse_exposition(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(key, value)| (key.to_owned(), value.parse().unwrap_or(f64::NAN)))
        .collect()
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    let h = Harness::start(&["metered"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let probe = h.health.probe(h.metrics.clone());
    tokio::spawn(oss_encryption_operator::telemetry::serve(
        listener,
        probe,
        std::future::pending(),
    ));
    h.create("metered", "metered", json!({})).await;
    h.wait_in_sync("metered").await;
    // GET, PUT, GET, GET: two reconciles done, the third started.
    h.wait_requests("metered", 4).await;

    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/readyz")).send().await.unwrap().status(),
        200,
        "caches synced"
    );
    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"));
    let samples = parse_exposition(&text);
    let value = |key: &str| {
        samples
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no sample {key} in\n{text}"))
    };
    assert!(value(r#"oss_encryption_operator_reconciles_total{result="ok"}"#) >= 2.0);
    assert!(
        value(
            r#"oss_encryption_operator_oss_requests_total{api="GetBucketEncryption",outcome="200",code=""}"#
        ) >= 1.0
    );
    assert_eq!(
        value(
            r#"oss_encryption_operator_oss_requests_total{api="PutBucketEncryption",outcome="200",code=""}"#
        ),
        1.0
    );
    assert_eq!(value(r#"oss_encryption_operator_objects{status="True"}"#), 1.0);
    assert_eq!(value("oss_encryption_operator_leader"), 1.0);
    assert!(value("oss_encryption_operator_reconcile_duration_seconds_count") >= 2.0);
    // The Kubernetes API calls, by verb, resource and code: the cache's list and watch, the
    // status writes, the Secret read and the Events.
    let kube = |verb: &str, resource: &str, code: &str| {
        value(&format!(
            r#"oss_encryption_operator_kubernetes_api_requests_total{{verb="{verb}",resource="{resource}",code="{code}"}}"#
        ))
    };
    assert!(kube("list", "bucketencryptions", "200") >= 1.0);
    assert!(kube("watch", "bucketencryptions", "200") >= 1.0);
    assert!(kube("patch", "bucketencryptions/status", "200") >= 1.0);
    assert!(kube("get", "secrets", "200") >= 1.0);
    assert!(kube("create", "events", "201") >= 1.0);
    assert!(!text.contains(support::oss::ACCESS_KEY_SECRET));
    promtool_accepts(&text);
}

/// The OpenMetrics exposition in the Prometheus text format that promtool reads (Debian's 2.42
/// parses no OpenMetrics): a counter family `x` (samples `x_total`) is declared as `x_total`
/// there, and there is no `# EOF`. Nothing else changes.
fn as_prometheus_text(exposition: &str) -> String {
    let counters: Vec<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::new();
    for line in exposition.lines().filter(|line| *line != "# EOF") {
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match header {
            Some((prefix, rest)) if counters.iter().any(|c| rest.split(' ').next() == Some(c)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(&format!("{prefix}{name}_total {tail}\n"));
            }
            _ => text.push_str(&format!("{line}\n")),
        }
    }
    text
}

/// `promtool check metrics` (Debian's prometheus package; `.ci/run` installs it) lints names,
/// types, units and help text. Without promtool the exposition is only parsed above, except in
/// CI, where its absence fails the test.
fn promtool_accepts(exposition: &str) {
    let exposition = &as_prometheus_text(exposition);
    use std::io::Write;
    let Ok(mut promtool) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing in CI: .ci/run installs it"
        );
        eprintln!("promtool not installed: the names and help text were not linted");
        return;
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs one replica with leader election until `stop` fires; returns why it ended.
fn replica(
    h: &Harness,
    identity: &str,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<oss_encryption_operator::leader::Ended> {
    use oss_encryption_operator::leader::{Election, lead};
    use oss_encryption_operator::reconcile::{self, Health, Shutdown};
    let client = h.kube.client();
    let oss = h.oss_client();
    let mut settings = h.settings.clone();
    settings.instance = identity.to_owned();
    let election = Election {
        namespace: "team-a".into(),
        lease: "operator".into(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(3),
        grace: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(2500),
    };
    let metrics = h.metrics.clone();
    tokio::spawn(async move {
        let work = |stop_signal: oss_encryption_operator::leader::StopSignal| {
            reconcile::run(
                client.clone(),
                oss,
                None,
                settings,
                metrics,
                Health::default(),
                async move { Shutdown::from(stop_signal.await) },
            )
        };
        lead(client.clone(), election, work, async {
            let _ = stop.await;
        })
        .await
        .expect("the election runs")
    })
}

/// (reason, reportingInstance) of the events about an object.
async fn events_by_instance(h: &Harness, name: &str) -> Vec<(String, String)> {
    h.event_list(name)
        .await
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.reporting_instance.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    use oss_encryption_operator::leader::Ended;
    let mut h = Harness::start(&["led"]).await;
    h.stop_controller().await;
    let (stop_a, stop_a_rx) = tokio::sync::oneshot::channel();
    let (stop_b, stop_b_rx) = tokio::sync::oneshot::channel();
    let a = replica(&h, "replica-a", stop_a_rx);
    let leases: kube::Api<Lease> = kube::Api::namespaced(h.kube.client(), "team-a");
    let holder = || async {
        leases
            .get_opt("operator")
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    for _ in 0..200 {
        if holder().await.as_deref() == Some("replica-a") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        holder().await.as_deref(),
        Some("replica-a"),
        "the first replica leads"
    );
    let b = replica(&h, "replica-b", stop_b_rx);

    h.create("led", "led", json!({})).await;
    h.wait_in_sync("led").await;
    let events = events_by_instance(&h, "led").await;
    assert!(
        !events.is_empty() && events.iter().all(|(_, who)| who == "replica-a"),
        "only the leader acts: {events:?}"
    );
    assert_eq!(holder().await.as_deref(), Some("replica-a"), "the standby waits");

    // The leader stops and releases the lease; the standby takes over and reconciles.
    stop_a.send(()).unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), a)
            .await
            .unwrap()
            .unwrap(),
        Ended::Shutdown
    );
    for _ in 0..400 {
        if holder().await.as_deref() == Some("replica-b") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(holder().await.as_deref(), Some("replica-b"), "hand-over");
    h.api
        .patch(
            "led",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"algorithm": "SM4"}})),
        )
        .await
        .unwrap();
    h.wait_for("led", "generation 2 in sync", |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == Some(2))
            && condition(o, "Ready").is_some_and(|(status, _)| status == "True")
    })
    .await;
    assert_eq!(h.oss_rule("led"), rule("SM4", "", ""));
    let events = events_by_instance(&h, "led").await;
    assert!(
        events.iter().any(|(_, who)| who == "replica-b"),
        "the new leader acted: {events:?}"
    );
    stop_b.send(()).unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), b)
            .await
            .unwrap()
            .unwrap(),
        Ended::Shutdown
    );
}

#[tokio::test]
async fn losing_the_lease_stops_reconciling() {
    use k8s_openapi::api::coordination::v1::Lease;
    use oss_encryption_operator::leader::Ended;
    let mut h = Harness::start(&["usurped"]).await;
    h.stop_controller().await;
    let (_stop, stop_rx) = tokio::sync::oneshot::channel();
    let a = replica(&h, "replica-a", stop_rx);
    h.create("usurped", "usurped", json!({})).await;
    h.wait_in_sync("usurped").await;

    // Another holder takes the lease (as after a network partition).
    let leases: kube::Api<Lease> = kube::Api::namespaced(h.kube.client(), "team-a");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    leases
        .patch(
            "operator",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "leaseDurationSeconds": 60}}),
            ),
        )
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), a)
        .await
        .expect("the replica notices")
        .unwrap();
    assert_eq!(ended, Ended::LeadershipLost);
    h.oss.emulator.state().set_rule("usurped", None);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        h.oss_rule("usurped"),
        None,
        "a replica without the lease corrects nothing"
    );
}
