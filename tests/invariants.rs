//! The invariants of DESIGN.md 3.1, each tried against the real controller, the Kubernetes API
//! test server and the OSS emulator: one bucket one owner, truthful `observedGeneration`,
//! deletion that always ends, bounded spec values, errors that say whose they are.

mod support;

use std::time::{Duration, Instant};

use kube::api::{DeleteParams, Patch, PatchParams};
use oss_encryption_operator::api::FINALIZER;
use oss_encryption_operator::emulator::{Faults, StoredRule};
use serde_json::json;
use support::operator::{Harness, NAMESPACE, SECRET, condition, message};

fn rule(algorithm: &str) -> Option<(String, String, String)> {
    Some((algorithm.into(), String::new(), String::new()))
}

fn has_finalizer(object: &oss_encryption_operator::api::BucketEncryption) -> bool {
    object
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// creationTimestamp has second resolution: the second object must be visibly younger.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// Waits until the emulator has answered at least `count` GETs (the controller's resyncs are
/// the clock: a stalled controller fails here instead of passing a quiet window).
async fn wait_for_gets(h: &Harness, count: u64) {
    for _ in 0..600 {
        if h.oss.emulator.state().total("GetBucketEncryption") >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "only {} GETs reached the emulator, expected {count}",
        h.oss.emulator.state().total("GetBucketEncryption")
    );
}

fn warnings(events: &[k8s_openapi::api::events::v1::Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| {
            (
                e.reason.clone().unwrap_or_default(),
                e.note.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn deleting_the_loser_of_a_conflict_leaves_the_winners_rule() {
    let h = Harness::start(&["contested"]).await;
    h.create("winner", "contested", json!({})).await;
    h.wait_in_sync("winner").await;
    next_second().await;
    h.create(
        "loser",
        "contested",
        json!({"algorithm": "SM4", "deletionPolicy": "Delete"}),
    )
    .await;
    let loser = h.wait_ready("loser", "False", "Conflict").await;
    assert!(!has_finalizer(&loser), "a non-owner never carries the finalizer");
    assert_eq!(
        h.kube.count("patch", "bucketencryptions"),
        0,
        "no finalizer was ever written (the winner is Retain, the loser not the owner)"
    );
    h.api.delete("loser", &DeleteParams::default()).await.unwrap();
    h.wait_gone("loser").await;
    // The winner keeps resyncing; its rule is untouched and nothing was deleted.
    let gets = h.oss.emulator.state().total("GetBucketEncryption");
    wait_for_gets(&h, gets + 3).await;
    assert_eq!(h.oss_rule("contested"), rule("AES256"));
    assert_eq!(h.oss.emulator.state().total("DeleteBucketEncryption"), 0);
    assert_eq!(h.oss.emulator.state().total("PutBucketEncryption"), 1);
}

#[tokio::test]
async fn one_bucket_named_through_two_endpoint_spellings_has_one_owner() {
    let h = Harness::start(&["spelt-twice"]).await;
    h.create("first", "spelt-twice", json!({})).await;
    h.wait_in_sync("first").await;
    next_second().await;
    let localhost = format!("http://localhost:{}", h.oss.emulator.endpoint().port().unwrap());
    h.create(
        "second",
        "spelt-twice",
        json!({"algorithm": "SM4", "endpoint": localhost}),
    )
    .await;
    let second = h.wait_ready("second", "False", "Conflict").await;
    assert!(message(&second, "Ready").contains("team-a/first"));
    // Many resyncs of the owner later, exactly one write ever reached OSS.
    let gets = h.oss.emulator.state().total("GetBucketEncryption");
    wait_for_gets(&h, gets + 6).await;
    assert_eq!(h.oss.emulator.state().total("PutBucketEncryption"), 1);
    assert_eq!(h.oss_rule("spelt-twice"), rule("AES256"));
    let first = h.api.get("first").await.unwrap();
    assert_eq!(first.status.unwrap().drift_corrections, 0);
}

#[tokio::test]
async fn the_next_in_line_takes_over_promptly_when_the_owner_goes() {
    let h = Harness::start(&["handed-over"]).await;
    h.create("owner", "handed-over", json!({})).await;
    h.wait_in_sync("owner").await;
    next_second().await;
    h.create("heir", "handed-over", json!({"algorithm": "SM4"})).await;
    h.wait_ready("heir", "False", "Conflict").await;
    // A few failed tries so that the heir's backoff has grown.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let puts_before = h.oss.emulator.state().total("PutBucketEncryption");
    h.api.delete("owner", &DeleteParams::default()).await.unwrap();
    let deleted = Instant::now();
    let mut taken_over = None;
    while deleted.elapsed() < Duration::from_secs(5) {
        let heir = h.api.get("heir").await.unwrap();
        if condition(&heir, "Ready").is_some_and(|(s, _)| s == "True") {
            taken_over = Some(deleted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = taken_over.expect("the heir took over within 5 s of the owner's deletion");
    println!("hand-over took {after:?}");
    assert_eq!(h.oss_rule("handed-over"), rule("SM4"));
    assert_eq!(
        h.oss.emulator.state().total("PutBucketEncryption") - puts_before,
        1,
        "the heir wrote once"
    );
}

#[tokio::test]
async fn a_spec_change_that_fails_transiently_is_not_reported_ready() {
    let h = Harness::start(&["stubborn"]).await;
    h.create("stubborn", "stubborn", json!({})).await;
    h.wait_in_sync("stubborn").await;
    h.oss.emulator.state().set_faults(Faults {
        internal_error_rate: 1.0,
        ..Faults::default()
    });
    h.api
        .patch(
            "stubborn",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"algorithm": "SM4"}})),
        )
        .await
        .unwrap();
    let failing = h
        .wait_for("stubborn", "a failed reconcile of generation 2", |o| {
            o.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Synced" && c.status == "False" && c.observed_generation == Some(2))
            })
        })
        .await;
    let status = failing.status.clone().unwrap();
    assert_eq!(
        status.observed_generation,
        Some(1),
        "generation 2 was never acted on: observedGeneration stays behind"
    );
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(
        !(ready.status == "True" && ready.observed_generation == Some(2)),
        "Ready=True must not be claimed for generation 2: {ready:?}"
    );
    assert_eq!(h.oss_rule("stubborn"), rule("AES256"));

    h.oss.emulator.state().set_faults(Faults::default());
    let done = h
        .wait_for("stubborn", "generation 2 ready", |o| {
            o.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == Some(2))
                && condition(o, "Ready").is_some_and(|(s, _)| s == "True")
        })
        .await;
    assert_eq!(h.oss_rule("stubborn"), rule("SM4"));
    assert_eq!(
        h.oss.emulator.state().counters()["PutBucketEncryption"][&200],
        2,
        "the first AES256 and exactly one SM4"
    );
    assert_eq!(
        done.status.unwrap().drift_corrections,
        0,
        "a spec change is not drift"
    );
    assert!(
        !h.event_reasons("stubborn")
            .await
            .contains(&"DriftCorrected".to_string())
    );
}

#[tokio::test]
async fn a_drift_correction_is_counted_in_status_and_metrics() {
    let h = Harness::start(&["watched"]).await;
    h.create("watched", "watched", json!({})).await;
    h.wait_in_sync("watched").await;
    h.oss.emulator.state().set_rule(
        "watched",
        Some(StoredRule {
            algorithm: "SM4".into(),
            ..StoredRule::default()
        }),
    );
    h.wait_for("watched", "one drift correction", |o| {
        o.status.as_ref().is_some_and(|s| s.drift_corrections == 1)
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(oss_encryption_operator::telemetry::serve(
        listener,
        h.health.probe(h.metrics.clone()),
        std::future::pending(),
    ));
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l == "oss_encryption_operator_drift_corrections_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn deletion_ends_when_the_namespace_and_its_secret_go() {
    let h = Harness::start(&["orphaned"]).await;
    h.create("orphaned", "orphaned", json!({"deletionPolicy": "Delete"}))
        .await;
    let object = h.wait_in_sync("orphaned").await;
    assert!(has_finalizer(&object));
    // What namespace deletion does: the Secret goes at once, the resource waits for its finalizer.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(h.kube.client(), NAMESPACE);
    secrets.delete(SECRET, &DeleteParams::default()).await.unwrap();
    h.api.delete("orphaned", &DeleteParams::default()).await.unwrap();
    h.wait_gone("orphaned").await;
    assert_eq!(h.oss_rule("orphaned"), rule("AES256"), "retained on doubt");
    assert_eq!(h.oss.emulator.state().total("DeleteBucketEncryption"), 0);
    let warnings = warnings(&h.event_list("orphaned").await);
    assert!(
        warnings
            .iter()
            .any(|(reason, note)| reason == "RuleRetained" && note.contains("team-a/oss-credentials")),
        "a Warning explains: {warnings:?}"
    );
}

#[tokio::test]
async fn an_undeserialisable_object_with_the_finalizer_is_released() {
    let h = Harness::start(&["mangled"]).await;
    // Admission would refuse this object: bypass it, as for an object stored before a
    // stricter CRD (the controller's own validation is what is tested here).
    h.kube.set_admission(false);
    let raw: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
        h.kube.client(),
        NAMESPACE,
        &kube::core::ApiResource::erase::<oss_encryption_operator::api::BucketEncryption>(&()),
    );
    let mut object: kube::core::DynamicObject = serde_json::from_value(
        serde_json::to_value(h.resource("mangled", "mangled", json!({"deletionPolicy": "Delete"}))).unwrap(),
    )
    .unwrap();
    object.data["spec"]["algorithm"] = json!("DES");
    object.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    raw.create(&Default::default(), &object).await.unwrap();
    raw.delete("mangled", &DeleteParams::default()).await.unwrap();
    let mut gone = false;
    for _ in 0..400 {
        if raw.get_opt("mangled").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the finalizer was released");
    assert!(
        h.oss.emulator.state().counters().is_empty(),
        "nothing sent to OSS"
    );
    let warnings = warnings(&h.event_list("mangled").await);
    assert!(
        warnings.iter().any(|(reason, _)| reason == "RuleRetained"),
        "a Warning explains: {warnings:?}"
    );
}

#[tokio::test]
async fn an_invalid_spec_with_the_finalizer_is_released_with_a_warning() {
    let h = Harness::start(&["invalid-delete"]).await;
    // Admission would refuse this object: bypass it, as for an object stored before a
    // stricter CRD (the controller's own validation is what is tested here).
    h.kube.set_admission(false);
    h.oss.emulator.state().set_rule(
        "invalid-delete",
        Some(StoredRule {
            algorithm: "AES256".into(),
            ..StoredRule::default()
        }),
    );
    let mut resource = h.resource(
        "invalid-delete",
        "invalid-delete",
        json!({"deletionPolicy": "Delete", "kmsMasterKeyId": "only-with-kms"}),
    );
    resource.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    h.api.create(&Default::default(), &resource).await.unwrap();
    h.wait_ready("invalid-delete", "False", "InvalidSpec").await;
    h.api
        .delete("invalid-delete", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_gone("invalid-delete").await;
    assert_eq!(h.oss_rule("invalid-delete"), rule("AES256"));
    let warnings = warnings(&h.event_list("invalid-delete").await);
    assert!(
        warnings
            .iter()
            .any(|(reason, note)| reason == "RuleRetained" && note.contains("kmsMasterKeyId")),
        "a Warning explains: {warnings:?}"
    );
}

#[tokio::test]
async fn resync_intervals_are_bounded_and_never_crash_the_operator() {
    let h = Harness::start(&["daily", "too-slow", "absurd", "after"]).await;
    // Admission would refuse this object: bypass it, as for an object stored before a
    // stricter CRD (the controller's own validation is what is tested here).
    h.kube.set_admission(false);
    h.create("daily", "daily", json!({"resyncInterval": "24h"})).await;
    h.wait_ready("daily", "True", "Applied").await;
    h.create("too-slow", "too-slow", json!({"resyncInterval": "24h1s"}))
        .await;
    let object = h.wait_ready("too-slow", "False", "InvalidSpec").await;
    assert!(message(&object, "Ready").contains("spec.resyncInterval"));
    h.create("absurd", "absurd", json!({"resyncInterval": "5000000000000000h"}))
        .await;
    h.wait_ready("absurd", "False", "InvalidSpec").await;
    // The operator is still alive and serving.
    h.create("after", "after", json!({})).await;
    h.wait_in_sync("after").await;
    assert_eq!(h.oss_rule("daily"), rule("AES256"));
    assert_eq!(h.oss_rule("too-slow"), None);
    assert_eq!(h.oss_rule("absurd"), None);
}

#[tokio::test]
async fn a_forbidden_secret_read_is_a_kubernetes_error_backed_off_as_terminal() {
    let mut h = Harness::start(&["forbidden", "clock"]).await;
    h.kube.set_faults(support::kube::KubeFaults {
        forbidden: vec!["get secrets".into()],
        ..Default::default()
    });
    h.operator_credentials = Some(h.oss.credentials.clone());
    h.stop_controller().await;
    h.start_controller();
    h.create("forbidden", "forbidden", json!({})).await;
    let object = h.wait_ready("forbidden", "False", "KubernetesError").await;
    let text = message(&object, "Ready");
    assert!(
        text.contains("team-a/oss-credentials") && text.contains("forbidden"),
        "{text}"
    );
    assert_eq!(condition(&object, "Synced").unwrap().1, "KubernetesError");
    let reads = h.kube.count("get", "secrets");
    // Another object (on the operator's own credentials) resyncs every 400 ms: ten of its
    // resyncs later the forbidden one has not been retried more than once.
    let mut clock = h.resource("clock", "clock", json!({}));
    clock.spec.credentials = None;
    h.api.create(&Default::default(), &clock).await.unwrap();
    h.wait_in_sync("clock").await;
    let gets = h.oss.emulator.state().total("GetBucketEncryption");
    wait_for_gets(&h, gets + 10).await;
    let retries = h.kube.count("get", "secrets") - reads;
    assert!(
        retries <= 1,
        "{retries} Secret reads: backed off like a terminal error"
    );
    assert!(
        !h.oss.emulator.state().bucket_requests().contains_key("forbidden"),
        "no OSS call without credentials"
    );
}
