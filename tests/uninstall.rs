//! Uninstalling never strips encryption: deleting the BucketEncryption CRD deletes every
//! instance (as the real API server does), and the operator takes none of those deletions as a
//! request to remove a rule. Also the test server's CRD deletion itself.

mod support;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use oss_encryption_operator::api::FINALIZER;
use serde_json::json;
use support::kube::KubeApiServer;
use support::operator::{Harness, NAMESPACE};

const CRD: &str = "bucketencryptions.oss.encryption.dev";

/// Polls the store until no BucketEncryption CRD is left (bounded).
async fn wait_crd_gone(kube: &KubeApiServer) {
    let crds: Api<CustomResourceDefinition> = Api::all(kube.client());
    for _ in 0..400 {
        if crds.get_opt(CRD).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the CRD was never deleted");
}

#[tokio::test]
async fn deleting_the_crd_retains_a_delete_policy_rule_and_ends() {
    let h = Harness::start(&["kept-sm4"]).await;
    h.create(
        "kept",
        "kept-sm4",
        json!({"algorithm": "SM4", "deletionPolicy": "Delete"}),
    )
    .await;
    h.wait_for("kept", "the finalizer", |o| {
        o.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
    })
    .await;
    h.wait_in_sync("kept").await;
    assert_eq!(h.oss_rule("kept-sm4"), Some(("SM4".into(), "".into(), "".into())));

    let crds: Api<CustomResourceDefinition> = Api::all(h.kube.client());
    crds.delete(CRD, &DeleteParams::default()).await.unwrap();
    wait_crd_gone(&h.kube).await;

    assert_eq!(
        h.oss_rule("kept-sm4"),
        Some(("SM4".into(), "".into(), "".into())),
        "the bucket keeps its rule"
    );
    let deletes = h
        .oss
        .emulator
        .state()
        .counters()
        .get("DeleteBucketEncryption")
        .map(|by_code| by_code.values().sum::<u64>())
        .unwrap_or(0);
    assert_eq!(deletes, 0, "no DeleteBucketEncryption was sent");
    let events = h.events("kept").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "RuleRetained" && note.contains("CustomResourceDefinition")),
        "a RuleRetained Warning says why: {events:?}"
    );
}

#[tokio::test]
async fn a_deleted_crd_deletes_its_instances_and_goes_with_the_last() {
    let kube = KubeApiServer::start().await;
    kube.register_crd(
        &serde_json::to_value(
            <oss_encryption_operator::api::BucketEncryption as kube::CustomResourceExt>::crd(),
        )
        .unwrap(),
    );
    let api: Api<kube::core::DynamicObject> = Api::namespaced_with(
        kube.client(),
        NAMESPACE,
        &kube::core::ApiResource {
            group: "oss.encryption.dev".into(),
            version: "v1alpha1".into(),
            api_version: "oss.encryption.dev/v1alpha1".into(),
            kind: "BucketEncryption".into(),
            plural: "bucketencryptions".into(),
        },
    );
    let object = |name: &str, finalizers: Vec<&str>| {
        serde_json::from_value(json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
            "metadata": {"name": name, "finalizers": finalizers},
            "spec": {"bucket": format!("b-{name}"), "region": "cn-hangzhou", "algorithm": "AES256"}
        }))
        .unwrap()
    };
    api.create(&PostParams::default(), &object("plain", vec![]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &object("held", vec!["example.com/hold"]))
        .await
        .unwrap();

    let crds: Api<CustomResourceDefinition> = Api::all(kube.client());
    crds.delete(CRD, &DeleteParams::default()).await.unwrap();
    let crd = crds.get(CRD).await.unwrap();
    assert!(crd.metadata.deletion_timestamp.is_some());
    assert_eq!(
        crd.metadata.generation,
        Some(1),
        "CRD deletion keeps the generation"
    );
    assert!(
        crd.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "customresourcecleanup.apiextensions.k8s.io")
    );
    let terminating = crd
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| c.type_ == "Terminating")
        .map(|c| c.status.clone());
    assert_eq!(terminating.as_deref(), Some("True"));
    assert!(
        api.get_opt("plain").await.unwrap().is_none(),
        "an instance without finalizers is gone"
    );
    let held = api.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "one with a finalizer is deleting"
    );
    let refused = api
        .create(&PostParams::default(), &object("late", vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 403 && s.message.contains("create not allowed while custom resource definition is terminating")),
        "no new instance while the CRD terminates: {refused:?}"
    );

    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_crd_gone(&kube).await;
}
