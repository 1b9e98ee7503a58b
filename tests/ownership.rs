//! One bucket, one owner across every actor (DESIGN.md 3.1): the claims index decides, nobody
//! writes before it is complete, a policy re-checks it before each write, and any change of a
//! bucket's claimants re-triggers them all, also after a relist that hid a Delete. Each test
//! runs the real controller against the Kubernetes API test server and the OSS emulator, with a
//! resync interval long enough that only the mechanism under test can make it pass.

mod support;

use std::time::Duration;

use kube::api::DeleteParams;
use oss_encryption_operator::api::FINALIZER;
use oss_encryption_operator::emulator::{Faults, StoredRule};
use serde_json::{Value, json};
use support::kube::KubeFaults;
use support::operator::{Harness, NAMESPACE, condition};
use support::policy::{create_policy, wait_status};

/// No resync gets in the way: whatever happens within a test happens because of a trigger.
const NEVER: Duration = Duration::from_secs(1800);

async fn quiet_harness(buckets: &[&str]) -> Harness {
    Harness::start_with(buckets, |settings| {
        settings.resync_interval = NEVER;
        settings.policy_secret_namespace = NAMESPACE.into();
    })
    .await
}

fn set_rule(h: &Harness, bucket: &str, algorithm: Option<&str>) {
    h.oss.emulator.state().set_rule(
        bucket,
        algorithm.map(|a| StoredRule {
            algorithm: a.into(),
            ..StoredRule::default()
        }),
    );
}

fn algorithm(h: &Harness, bucket: &str) -> Option<String> {
    h.oss_rule(bucket).map(|(algorithm, _, _)| algorithm)
}

fn has_finalizer(object: &oss_encryption_operator::api::BucketEncryption) -> bool {
    object
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// Sleeps until just after a second boundary, so that what follows happens within one second
/// (creationTimestamp has second resolution).
async fn start_of_a_second() {
    let now = jiff::Timestamp::now();
    let into = now.subsec_nanosecond() as u64;
    tokio::time::sleep(Duration::from_nanos(1_000_000_000 - into + 5_000_000)).await;
}

#[tokio::test]
async fn a_same_second_senior_displaces_the_current_owner_promptly() {
    let h = quiet_harness(&["shared-bucket"]).await;
    start_of_a_second().await;
    // "zeta" comes first and is applied; "alpha" arrives in the same second and wins the tie.
    h.create(
        "zeta",
        "shared-bucket",
        json!({"algorithm": "AES256", "deletionPolicy": "Delete"}),
    )
    .await;
    let zeta = h
        .wait_for("zeta", "applied with its finalizer", |o| {
            condition(o, "Ready").is_some_and(|(s, _)| s == "True") && has_finalizer(o)
        })
        .await;
    let alpha = h
        .create("alpha", "shared-bucket", json!({"algorithm": "SM4"}))
        .await;
    assert_eq!(
        zeta.metadata.creation_timestamp, alpha.metadata.creation_timestamp,
        "the scenario needs both resources created within one second"
    );
    let started = std::time::Instant::now();
    let zeta = h.wait_ready("zeta", "False", "Conflict").await;
    assert!(
        !has_finalizer(&zeta),
        "the displaced owner releases its finalizer"
    );
    h.wait_ready("alpha", "True", "Applied").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "displaced within 5 s, took {:?}",
        started.elapsed()
    );
    assert_eq!(algorithm(&h, "shared-bucket").as_deref(), Some("SM4"));
    // Deleting the displaced one (Delete policy, but not the owner) leaves the owner's rule.
    h.api.delete("zeta", &DeleteParams::default()).await.unwrap();
    h.wait_gone("zeta").await;
    assert_eq!(algorithm(&h, "shared-bucket").as_deref(), Some("SM4"));
}

#[tokio::test]
async fn the_heir_takes_over_after_a_relist_that_hid_the_owners_delete() {
    let mut h = quiet_harness(&["inherited"]).await;
    h.create("elder", "inherited", json!({"algorithm": "AES256"}))
        .await;
    h.wait_ready("elder", "True", "Applied").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.create("heir", "inherited", json!({"algorithm": "SM4"})).await;
    h.wait_ready("heir", "False", "Conflict").await;

    // Watches fail while the elder is deleted and the history is compacted: the controller
    // never sees the Delete, only a relist without the elder.
    h.kube.set_faults(KubeFaults {
        forbidden: vec!["watch bucketencryptions".into()],
        ..KubeFaults::default()
    });
    h.kube.drop_watches();
    h.api.delete("elder", &DeleteParams::default()).await.unwrap();
    h.wait_gone("elder").await;
    h.kube.compact();
    let lists = h.kube.count("list", "bucketencryptions");
    h.kube.set_faults(KubeFaults::default());
    for _ in 0..600 {
        if h.kube.count("list", "bucketencryptions") > lists {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        h.kube.count("list", "bucketencryptions") > lists,
        "the controller relisted"
    );
    let relisted = std::time::Instant::now();
    h.wait_ready("heir", "True", "Applied").await;
    assert!(
        relisted.elapsed() < Duration::from_secs(5),
        "the heir took over within 5 s of the relist, took {:?}",
        relisted.elapsed()
    );
    assert_eq!(algorithm(&h, "inherited").as_deref(), Some("SM4"));
}

fn pass_done(status: &Value) -> bool {
    status["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Synced"))
}

#[tokio::test]
async fn a_policy_writes_nothing_before_it_knows_the_resources() {
    let buckets = ["p-owned", "p-free-1", "p-free-2"];
    let mut h = quiet_harness(&buckets).await;
    set_rule(&h, "p-owned", Some("AES256"));
    // The resources cannot be listed or watched (start-up, hand-over, RBAC being fixed).
    h.kube.set_faults(KubeFaults {
        forbidden: vec!["list bucketencryptions".into(), "watch bucketencryptions".into()],
        ..KubeFaults::default()
    });
    h.create("owned", "p-owned", json!({"algorithm": "AES256"})).await;
    create_policy(
        &h,
        "kms-all",
        json!({"selector": {"namePrefix": "p-"}, "rule": {"algorithm": "KMS"}, "managementPolicy": "Manage"}),
    )
    .await;
    wait_status(&h, "kms-all", "a first pass", pass_done).await;
    assert_eq!(
        h.oss.emulator.state().total("PutBucketEncryption"),
        0,
        "nothing is written while the resources are unknown"
    );
    assert_eq!(algorithm(&h, "p-owned").as_deref(), Some("AES256"));

    h.kube.set_faults(KubeFaults::default());
    let status = wait_status(&h, "kms-all", "converged", |s| {
        s["buckets"]["compliant"] == 2 && s["buckets"]["managedByResource"] == 1
    })
    .await;
    assert_eq!(status["buckets"]["errors"], 0, "{status:#}");
    assert_eq!(algorithm(&h, "p-owned").as_deref(), Some("AES256"));
    assert_eq!(algorithm(&h, "p-free-1").as_deref(), Some("KMS"));
    assert_eq!(algorithm(&h, "p-free-2").as_deref(), Some("KMS"));
    h.wait_in_sync("owned").await;
}

#[tokio::test]
async fn a_resource_created_during_a_slow_pass_keeps_its_rule() {
    let names: Vec<String> = (0..24).map(|i| format!("slow-{i:02}")).collect();
    let buckets: Vec<&str> = names.iter().map(String::as_str).collect();
    let h = quiet_harness(&buckets).await;
    h.oss.emulator.state().set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    create_policy(
        &h,
        "kms-slow",
        json!({"selector": {"namePrefix": "slow-"}, "rule": {"algorithm": "KMS"}, "managementPolicy": "Manage"}),
    )
    .await;
    // The pass is under way (it has started writing) when the resource arrives; its bucket is
    // the last one the pass reaches.
    for _ in 0..400 {
        if h.oss.emulator.state().total("PutBucketEncryption") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.create("latecomer", "slow-23", json!({"algorithm": "AES256"}))
        .await;
    let status = wait_status(&h, "kms-slow", "its pass", |s| s["buckets"]["selected"] == 24).await;
    h.wait_ready("latecomer", "True", "Applied").await;
    assert_eq!(
        algorithm(&h, "slow-23").as_deref(),
        Some("AES256"),
        "the policy re-checked ownership before writing; status {status:#}"
    );
    let latecomer = h.api.get("latecomer").await.unwrap();
    assert_eq!(
        condition(&latecomer, "Ready").map(|(s, _)| s).as_deref(),
        Some("True")
    );
    assert_eq!(algorithm(&h, "slow-00").as_deref(), Some("KMS"));
}

#[tokio::test]
async fn an_older_broken_policy_does_not_silence_a_younger_working_one() {
    let h = quiet_harness(&["fleet-a", "fleet-b"]).await;
    // The older policy names a Secret that does not exist: it can never act on its buckets.
    create_policy(
        &h,
        "broken-elder",
        json!({"selector": {"namePrefix": "fleet-"}, "rule": {"algorithm": "AES256"},
               "managementPolicy": "Manage", "credentials": {"secretRef": {"name": "missing"}}}),
    )
    .await;
    wait_status(&h, "broken-elder", "its failed pass", |s| {
        s["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Synced" && c["status"] == "False"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create_policy(
        &h,
        "working-junior",
        json!({"selector": {"namePrefix": "fleet-"}, "rule": {"algorithm": "KMS"}, "managementPolicy": "Manage"}),
    )
    .await;
    let status = wait_status(&h, "working-junior", "both buckets compliant", |s| {
        s["buckets"]["compliant"] == 2
    })
    .await;
    assert_eq!(status["buckets"]["claimedByPolicy"], 0, "{status:#}");
    assert_eq!(algorithm(&h, "fleet-a").as_deref(), Some("KMS"));
    assert_eq!(algorithm(&h, "fleet-b").as_deref(), Some("KMS"));
}

/// The Lease's holder, as the API server has it.
async fn lease_holder(h: &Harness) -> Option<String> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(h.kube.client(), NAMESPACE);
    leases
        .get_opt("oss-encryption-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_writing_before_its_lease_can_expire() {
    let mut h = quiet_harness(&["fenced", "taken-over"]).await;
    h.stop_controller().await;
    let allowed = format!(
        "--allowed-endpoint-suffixes={}",
        h.oss.emulator.endpoint().authority()
    );
    let spawn = |who: &str| {
        h.spawn_operator_binary(
            &format!("{{token: {who}}}"),
            &["--leader-election".into(), allowed.clone()],
            |command| {
                command.env("POD_NAMESPACE", NAMESPACE).env("POD_NAME", who);
            },
        )
    };
    let mut first = spawn("first");
    h.create("fenced", "fenced", json!({})).await;
    h.wait_ready("fenced", "True", "Applied").await;
    assert_eq!(lease_holder(&h).await.as_deref(), Some("first"));
    let _second = spawn("second");

    // The leader's renewals fail (its other requests still go through, as in a partial
    // partition); the standby's succeed.
    h.kube.set_faults(KubeFaults {
        forbidden_to: vec![("first".into(), "patch leases".into())],
        ..KubeFaults::default()
    });
    let cut = std::time::Instant::now();
    let exited = loop {
        if let Some(status) = first.process.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(40),
            "the leader never stepped down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stepped_down = cut.elapsed();
    assert!(
        !exited.success(),
        "stepping down exits non-zero so a restart waits for the lease"
    );
    assert_eq!(
        lease_holder(&h).await.as_deref(),
        Some("first"),
        "it stepped down before the lease could pass to the standby (after {stepped_down:?})"
    );
    let writes_at_step_down = h.oss.emulator.state().total("PutBucketEncryption");

    // The standby takes over once the lease expires, and reconciles what arrives next.
    h.create("taken-over", "taken-over", json!({"algorithm": "SM4"}))
        .await;
    h.wait_ready("taken-over", "True", "Applied").await;
    assert_eq!(lease_holder(&h).await.as_deref(), Some("second"));
    assert_eq!(
        h.oss.emulator.state().total("PutBucketEncryption"),
        writes_at_step_down + 1,
        "only the new leader's write"
    );
}
