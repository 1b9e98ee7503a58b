//! The controller's opt-in object audit (`spec.objectAudit`, DESIGN 3.7) end to end: the real
//! controller against the Kubernetes API test server and the OSS emulator holding objects of
//! every encryption kind. `status.objects` carries the CLI's exact figures (or exactly N
//! examined with a sample), a Warning event and the metrics report objects below the rule, no
//! object is ever written, the status is written once per audit and survives the rule
//! reconcile's own status writes, a resource that does not own its bucket (or whose bucket is
//! not in sync) is never audited, an audit never holds a reconcile slot, and objects that cannot
//! be read are errors, never counted as unencrypted.

mod support;

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use oss_encryption_operator::api::BucketEncryption;
use oss_encryption_operator::emulator::StoredRule;
use oss_encryption_operator::emulator::objects::{MANAGED_CMK_ID, ObjectSse, Seed, StoredObject};
use oss_encryption_operator::reconcile::{AUDIT_FIELD_MANAGER, FIELD_MANAGER, Settings};
use serde_json::{Value, json};
use support::operator::{Harness, condition};

fn object(sse: ObjectSse, modified: &str) -> StoredObject {
    StoredObject {
        etag: "\"5D41402ABC4B2A76B9719D911017C592\"".into(),
        size: 5,
        last_modified: modified.parse::<Timestamp>().unwrap(),
        content_type: "text/plain".into(),
        meta: Vec::new(),
        sse,
    }
}

/// 3 None, 2 AES256, 1 SM4, 4 KMS (3 under k1, 1 under the managed key), 2 KMS+SM4 (k2): the
/// objects of tests/audit.rs, so the controller's figures can be held against the CLI's.
fn fill(h: &Harness, bucket: &str) {
    let mut objects = h.oss.emulator.state().objects();
    for (key, at) in [
        ("old/none-1", "2019-05-01T00:00:00Z"),
        ("none-2", "2021-01-01T00:00:00Z"),
        ("dir/a b+c/中文 ü~.txt", "2022-01-01T00:00:00Z"),
    ] {
        objects.put(bucket, key, object(ObjectSse::none(), at));
    }
    for (key, algorithm, at) in [
        ("aes-1", "AES256", "2018-01-01T00:00:00Z"),
        ("aes-2", "AES256", "2025-06-01T00:00:00Z"),
        ("sm4-1", "SM4", "2024-01-01T00:00:00Z"),
    ] {
        objects.put(bucket, key, object(ObjectSse::service(algorithm), at));
    }
    for i in 0..3 {
        let kms = object(ObjectSse::kms("k1", false), "2026-01-01T00:00:00Z");
        objects.put(bucket, &format!("kms-{i}"), kms);
    }
    let managed = object(ObjectSse::kms("", false), "2026-01-01T00:00:00Z");
    objects.put(bucket, "kms-managed", managed);
    for i in 0..2 {
        let sm4 = object(ObjectSse::kms("k2", true), "2026-01-01T00:00:00Z");
        objects.put(bucket, &format!("kms-sm4-{i}"), sm4);
    }
}

/// A controller that looks for due audits every 100 ms.
async fn harness(buckets: &[&str], tweak: impl FnOnce(&mut Settings)) -> Harness {
    Harness::start_with(buckets, |settings| {
        settings.object_audits.scan_period = Duration::from_millis(100);
        tweak(settings);
    })
    .await
}

fn objects_of(o: &BucketEncryption) -> Option<Value> {
    let status = o.status.as_ref()?.objects.as_ref()?;
    Some(serde_json::to_value(status).unwrap())
}

fn emulator_total(h: &Harness, api: &str) -> u64 {
    h.oss.emulator.state().total(api)
}

/// What the emulator was asked to write to objects: always nothing.
fn object_writes(h: &Harness) -> u64 {
    ["PutObject", "CopyObject"]
        .iter()
        .map(|api| emulator_total(h, api))
        .sum()
}

/// The field managers of the stored object's status fields, with the fields they own.
async fn status_managers(h: &Harness, name: &str) -> Vec<(String, Value)> {
    let stored = h.api.get(name).await.unwrap();
    stored
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .map(|m| {
            let fields = m.fields_v1.map(|f| f.0["f:status"].clone());
            (m.manager.unwrap_or_default(), fields.unwrap_or(Value::Null))
        })
        .collect()
}

#[tokio::test]
async fn an_audit_of_every_object_reports_the_clis_exact_figures_once_with_an_event_and_metrics() {
    let mut h = harness(&["data-kms"], |_| {}).await;
    fill(&h, "data-kms");
    h.start_clock().await;
    let spec = json!({"algorithm": "KMS", "kmsMasterKeyId": "k1"});
    h.create("data", "data-kms", spec).await;
    h.wait_in_sync("data").await;
    h.ticks(3).await;
    assert_eq!(
        emulator_total(&h, "ListObjectsV2") + emulator_total(&h, "HeadObject"),
        0,
        "no objectAudit: no audit"
    );

    // Opting in is a spec edit: one status write for the new generation, one for the audit.
    h.kube.reset_counters();
    let patch = json!({"spec": {"objectAudit": {"interval": "24h"}}});
    h.api
        .patch("data", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let audited = h
        .wait_for("data", "status.objects", |o| objects_of(o).is_some())
        .await;
    let objects = objects_of(&audited).unwrap();
    assert_eq!(objects["rule"], "KMS (key k1)");
    assert_eq!(objects["listed"], 12);
    assert_eq!(objects["examined"], 12);
    assert_eq!(
        objects["belowRule"], 6,
        "None, AES256 and SM4 are weaker than KMS"
    );
    assert_eq!(
        objects["byEncryption"],
        json!({"None": 3, "AES256": 2, "SM4": 1, "KMS": 4, "KMS+SM4": 2})
    );
    assert_eq!(objects["byKey"], json!({"k1": 3, "k2": 2, MANAGED_CMK_ID: 1}));
    assert_eq!(
        objects["oldestBelowRule"],
        json!({"key": "aes-1", "lastModified": "2018-01-01T00:00:00.000Z"})
    );
    assert_eq!(objects["newestBelowRule"]["key"], "aes-2");
    assert_eq!(objects["requests"], json!({"listObjects": 1, "headObject": 12}));
    assert!(objects.get("sample").is_none() && objects.get("belowRuleShare").is_none());
    assert!(objects.get("errors").is_none(), "{objects}");
    let at: Timestamp = objects["lastAuditTime"].as_str().unwrap().parse().unwrap();
    assert!(Timestamp::now().duration_since(at).as_secs() < 60);

    // The Warning event says how many, against which rule.
    let events = h.events("data").await;
    let (_, note) = events
        .iter()
        .find(|(reason, _)| reason == "ObjectsBelowRule")
        .unwrap_or_else(|| panic!("no ObjectsBelowRule event: {events:?}"));
    assert!(
        note.starts_with("6 of 12 examined objects are encrypted below the rule KMS (key k1) (None 3, AES256 2, SM4 1, KMS 4, KMS+SM4 2)"),
        "{note}"
    );
    assert!(note.contains("oldest aes-1 (2018-01-01T00:00:00.000Z)"), "{note}");

    // The metrics, per resource and by outcome.
    let metrics = h.metrics.encode();
    let series = r#"{resource_namespace="team-a",resource_name="data",bucket="data-kms"}"#;
    for line in [
        format!("oss_encryption_operator_audit_objects_below_rule{series} 6"),
        format!("oss_encryption_operator_audit_objects_examined{series} 12"),
        r#"oss_encryption_operator_object_audits_total{outcome="below_rule"} 1"#.to_owned(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
    }

    // Read-only, and exactly one audit: one listing, one HeadObject per object.
    h.ticks(5).await;
    assert_eq!(object_writes(&h), 0, "an audit never writes objects");
    assert_eq!(emulator_total(&h, "ListObjectsV2"), 1);
    assert_eq!(emulator_total(&h, "HeadObject"), 12);
    assert_eq!(
        h.kube.count("patch", "bucketencryptions/status"),
        2,
        "the new generation's status, then the audit's: nothing in between nor after"
    );
    // A later rule reconcile that writes the status (another spec edit) leaves the audit as it
    // is, and an unchanged rule and sample start no new audit before the interval.
    let patch = json!({"spec": {"resyncInterval": "45s"}});
    h.api
        .patch("data", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let edited = h
        .wait_for("data", "the edit reconciled", |o| {
            o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation
        })
        .await;
    h.ticks(3).await;
    let now = h.api.get("data").await.unwrap();
    assert_eq!(objects_of(&edited), Some(objects.clone()));
    assert_eq!(objects_of(&now), Some(objects));
    assert_eq!(emulator_total(&h, "HeadObject"), 12, "no second audit");
    assert_eq!(h.kube.count("patch", "bucketencryptions/status"), 3);
    // The rule's status applies never carry status.objects: they cannot take it over, nor put
    // back figures an audit has replaced.
    let managers = status_managers(&h, "data").await;
    let audit = managers.iter().find(|(m, _)| m == AUDIT_FIELD_MANAGER).unwrap();
    assert_eq!(
        audit.1.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["f:objects"],
        "the audit owns status.objects and nothing else"
    );
    let rule = managers.iter().find(|(m, _)| m == FIELD_MANAGER).unwrap();
    assert!(rule.1.get("f:objects").is_none(), "{managers:?}");

    // Against another rule the figures are stale: a new audit, one more status write.
    let patch = json!({"spec": {"algorithm": "KMS", "kmsMasterKeyId": null}});
    h.api
        .patch("data", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let again = h
        .wait_for("data", "an audit against the new rule", |o| {
            objects_of(o).is_some_and(|s| s["rule"] == "KMS (OSS-managed key)")
        })
        .await;
    assert_eq!(objects_of(&again).unwrap()["belowRule"], 6);
    assert_eq!(emulator_total(&h, "HeadObject"), 24);
    assert_eq!(object_writes(&h), 0);

    // Opting out removes the figures and their series: stale numbers do not outlive the audit.
    let patch = json!({"spec": {"objectAudit": null}});
    h.api
        .patch("data", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let out = h
        .wait_for("data", "status.objects removed", |o| {
            objects_of(o).is_none()
                && o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation
        })
        .await;
    assert_eq!(condition(&out, "Ready").unwrap().0, "True");
    h.ticks(3).await;
    let metrics = h.metrics.encode();
    assert!(
        !metrics.contains("oss_encryption_operator_audit_objects_below_rule{"),
        "{metrics}"
    );
    assert_eq!(emulator_total(&h, "HeadObject"), 24, "no audit after opting out");
    h.stop_controller().await;
}

#[tokio::test]
async fn a_sample_examines_exactly_n_and_estimates_the_share_below_the_rule() {
    let h = harness(&["big"], |_| {}).await;
    // 2,500 objects, one in four unencrypted: 25% below KMS, over three listing pages.
    h.oss
        .emulator
        .state()
        .seed_objects(
            "big",
            Seed {
                prefix: "o/".into(),
                count: 2500,
                encryptions: vec![
                    ObjectSse::none(),
                    ObjectSse::kms("k1", false),
                    ObjectSse::kms("k1", false),
                    ObjectSse::kms("k1", false),
                ],
                last_modified: None,
                size: 1,
            },
        )
        .unwrap();
    let spec = json!({"algorithm": "KMS", "objectAudit": {"sample": 200}});
    h.create("big", "big", spec).await;
    let audited = h
        .wait_for("big", "status.objects", |o| objects_of(o).is_some())
        .await;
    let objects = objects_of(&audited).unwrap();
    assert_eq!(objects["sample"], 200);
    assert_eq!(objects["listed"], 2500);
    assert_eq!(objects["examined"], 200);
    assert_eq!(objects["requests"], json!({"listObjects": 3, "headObject": 200}));
    assert_eq!(
        emulator_total(&h, "HeadObject"),
        200,
        "exactly N HeadObject requests"
    );
    let by = &objects["byEncryption"];
    assert_eq!(by["None"].as_u64().unwrap() + by["KMS"].as_u64().unwrap(), 200);
    assert_eq!(objects["belowRule"], by["None"]);
    let percent = |v: &Value| -> f64 { v.as_str().unwrap().trim_end_matches('%').parse().unwrap() };
    let share = &objects["belowRuleShare"];
    let (estimate, low, high) = (
        percent(&share["estimate"]),
        percent(&share["low"]),
        percent(&share["high"]),
    );
    assert!(low <= estimate && estimate <= high, "{share}");
    assert!(
        (estimate - by["None"].as_f64().unwrap() / 2.0).abs() < 0.01,
        "{share}"
    );
    // 200 of 2,500 sampled: the interval is a few points wide either side.
    assert!(high - low > 5.0 && high - low < 20.0, "{share}");
    assert_eq!(object_writes(&h), 0);
}

#[tokio::test]
async fn a_resource_that_does_not_own_its_bucket_or_is_not_in_sync_is_never_audited() {
    let h = harness(&["shared", "drifted"], |_| {}).await;
    fill(&h, "shared");
    fill(&h, "drifted");
    h.start_clock().await;
    // The elder owns the bucket and asks for no audit; the junior asks for one: Conflict.
    h.create("elder", "shared", json!({})).await;
    h.wait_in_sync("elder").await;
    h.create("junior", "shared", json!({"objectAudit": {}})).await;
    h.wait_ready("junior", "False", "Conflict").await;
    // Observe mode on a bucket holding another rule: Ready, but not in sync.
    h.oss.emulator.state().set_rule(
        "drifted",
        Some(StoredRule {
            algorithm: "AES256".into(),
            ..StoredRule::default()
        }),
    );
    let observe = json!({"algorithm": "KMS", "managementPolicy": "Observe", "objectAudit": {}});
    h.create("watcher", "drifted", observe).await;
    let watcher = h
        .wait_for("watcher", "InSync=False", |o| {
            condition(o, "InSync") == Some(("False".into(), "Drifted".into()))
        })
        .await;
    assert_eq!(condition(&watcher, "Ready").unwrap().0, "True");
    h.ticks(10).await;
    assert_eq!(
        emulator_total(&h, "ListObjectsV2") + emulator_total(&h, "HeadObject"),
        0,
        "neither was audited"
    );
    for name in ["junior", "watcher"] {
        assert_eq!(objects_of(&h.api.get(name).await.unwrap()), None, "{name}");
    }
    assert!(
        !h.metrics
            .encode()
            .contains("oss_encryption_operator_object_audits_total{"),
        "no audit counted"
    );

    // The elder goes: the junior owns the bucket, is reconciled in sync, then audited.
    h.api.delete("elder", &Default::default()).await.unwrap();
    h.wait_gone("elder").await;
    let junior = h
        .wait_for("junior", "status.objects", |o| objects_of(o).is_some())
        .await;
    assert_eq!(
        objects_of(&junior).unwrap()["belowRule"],
        3,
        "AES256: the 3 unencrypted"
    );
    assert_eq!(object_writes(&h), 0);
}

#[tokio::test]
async fn an_audit_never_holds_a_reconcile_slot() {
    // One reconcile slot; audits capped at 2 data-plane requests per second, so an audit of 60
    // objects takes about 30 s.
    let h = harness(&["slow", "next"], |settings| {
        settings.concurrency = 1;
        settings.object_audits.qps = 2.0;
        settings.object_audits.burst = 1;
    })
    .await;
    h.oss
        .emulator
        .state()
        .seed_objects(
            "slow",
            Seed {
                prefix: "o/".into(),
                count: 60,
                encryptions: vec![ObjectSse::none()],
                last_modified: None,
                size: 1,
            },
        )
        .unwrap();
    h.create("slow", "slow", json!({"objectAudit": {}})).await;
    h.wait_in_sync("slow").await;
    // The audit is under way...
    for _ in 0..200 {
        if emulator_total(&h, "HeadObject") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(emulator_total(&h, "HeadObject") > 0, "the audit started");
    // ...and a new resource is reconciled meanwhile, and the running one resynced.
    h.create("next", "next", json!({})).await;
    h.wait_in_sync("next").await;
    let reads = emulator_total(&h, "GetBucketEncryption");
    for _ in 0..200 {
        if emulator_total(&h, "GetBucketEncryption") >= reads + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        emulator_total(&h, "GetBucketEncryption") >= reads + 3,
        "resyncs go on during the audit"
    );
    let slow = h.api.get("slow").await.unwrap();
    assert_eq!(objects_of(&slow), None, "the audit is still running");
    assert!(emulator_total(&h, "HeadObject") < 60);
}

#[tokio::test]
async fn objects_that_cannot_be_read_are_counted_as_errors_never_as_unencrypted() {
    // Two data-plane requests a second, so the audit is still running when access is revoked.
    let h = harness(&["revoked"], |settings| {
        settings.object_audits.qps = 2.0;
        settings.object_audits.burst = 1;
    })
    .await;
    h.oss
        .emulator
        .state()
        .seed_objects(
            "revoked",
            Seed {
                prefix: "o/".into(),
                count: 16,
                encryptions: vec![ObjectSse::none()],
                last_modified: None,
                size: 1,
            },
        )
        .unwrap();
    h.create("revoked", "revoked", json!({"objectAudit": {}})).await;
    h.wait_in_sync("revoked").await;
    for _ in 0..200 {
        if emulator_total(&h, "HeadObject") >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The access key loses the bucket mid-audit: every further HeadObject is 403 AccessDenied.
    h.oss
        .emulator
        .state()
        .set_access_denied("revoked", support::oss::ACCESS_KEY_ID, true);
    let audited = h
        .wait_for("revoked", "status.objects", |o| objects_of(o).is_some())
        .await;
    let objects = objects_of(&audited).unwrap();
    let (examined, errors) = (
        objects["examined"].as_u64().unwrap(),
        objects["errors"].as_u64().unwrap(),
    );
    assert_eq!(objects["listed"], 16);
    assert_eq!(examined + errors, 16, "{objects}");
    assert!(examined >= 3 && errors > 0, "{objects}");
    assert_eq!(
        objects["belowRule"], examined,
        "only examined objects are counted"
    );
    assert_eq!(objects["byEncryption"]["None"], examined);
    let error = objects["error"].as_str().unwrap();
    assert!(
        error.contains("AccessDenied") && error.contains("request id"),
        "{error}"
    );
    assert_eq!(object_writes(&h), 0);
}
