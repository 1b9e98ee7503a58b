//! The event recorder (`reconcile::events`) against the Kubernetes API test server: a repeat
//! within the fold window patches the first event's `series` (as the recorded real server
//! exchange does), a different reason is an event of its own, and a repeat whose event is gone
//! from the server creates it anew.

mod support;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::Api;
use kube::api::DeleteParams;
use kube::runtime::events::{Event, EventType};
use oss_encryption_operator::reconcile::events::EventRecorder;
use support::kube::KubeApiServer;

fn regarding() -> ObjectReference {
    ObjectReference {
        api_version: Some("oss.encryption.dev/v1alpha1".into()),
        kind: Some("BucketEncryption".into()),
        name: Some("logs".into()),
        namespace: Some("team-a".into()),
        uid: Some("b9f14760-3bbc-4127-a417-6a1e37ce3b9e".into()),
        ..Default::default()
    }
}

fn warning(reason: &str, note: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// (reason, note, series count) of every event in team-a, by name.
async fn listed(events: &Api<KubeEvent>) -> Vec<(String, String, String, Option<i32>)> {
    let mut all: Vec<_> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.metadata.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.series.map(|s| s.count),
            )
        })
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn repeats_fold_into_one_series_and_a_vanished_event_is_created_again() {
    let kube = KubeApiServer::start().await;
    let recorder = EventRecorder::new(kube.client(), "oss-encryption-operator", "pod-0");
    let events: Api<KubeEvent> = Api::namespaced(kube.client(), "team-a");

    recorder
        .publish(&warning("ReconcileError", "denied"), &regarding())
        .await
        .unwrap();
    recorder
        .publish(&warning("ReconcileError", "denied again"), &regarding())
        .await
        .unwrap();
    recorder
        .publish(&warning("ReconcileError", "and again"), &regarding())
        .await
        .unwrap();
    let after_repeats = listed(&events).await;
    assert_eq!(
        after_repeats.len(),
        1,
        "one event for three repeats: {after_repeats:?}"
    );
    let (name, reason, note, count) = after_repeats[0].clone();
    assert!(name.starts_with("logs."), "{name}");
    assert_eq!(
        (reason.as_str(), note.as_str(), count),
        ("ReconcileError", "denied", Some(3))
    );
    let first = events.get(&name).await.unwrap();
    assert_eq!(first.reporting_instance.as_deref(), Some("pod-0"));
    assert_eq!(
        first.reporting_controller.as_deref(),
        Some("oss-encryption-operator")
    );
    assert!(first.series.unwrap().last_observed_time.0 >= first.event_time.unwrap().0);

    recorder
        .publish(&warning("KeyNotUsable", "disabled"), &regarding())
        .await
        .unwrap();
    assert_eq!(listed(&events).await.len(), 2, "another reason is another event");

    // The server dropped the event (TTL, or someone deleted it): the next repeat creates it anew.
    events.delete(&name, &DeleteParams::default()).await.unwrap();
    recorder
        .publish(&warning("ReconcileError", "still denied"), &regarding())
        .await
        .unwrap();
    let recreated: Vec<_> = listed(&events)
        .await
        .into_iter()
        .filter(|(_, reason, _, _)| reason == "ReconcileError")
        .collect();
    assert_eq!(recreated.len(), 1, "{recreated:?}");
    assert_ne!(recreated[0].0, name);
    assert_eq!((recreated[0].2.as_str(), recreated[0].3), ("still denied", None));
}
