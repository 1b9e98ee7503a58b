//! BucketEncryptionPolicy fixtures: create a policy against the harness's emulator, wait on its
//! status, read its events.

use std::time::Duration;

use kube::api::{Api, PostParams};
use oss_encryption_operator::api::policy::BucketEncryptionPolicy;
use serde_json::{Value, json};

use super::operator::{Harness, SECRET};

pub fn policies(h: &Harness) -> Api<BucketEncryptionPolicy> {
    Api::all(h.kube.client())
}

pub async fn create_policy(h: &Harness, name: &str, spec: Value) {
    let mut document = json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionPolicy",
        "metadata": {"name": name},
        "spec": {"endpoint": h.oss.emulator.url(), "credentials": {"secretRef": {"name": SECRET}}},
    });
    for (k, v) in spec.as_object().unwrap() {
        document["spec"][k] = v.clone();
    }
    let policy: BucketEncryptionPolicy = serde_json::from_value(document).unwrap();
    policies(h).create(&PostParams::default(), &policy).await.unwrap();
}

/// Waits until the policy's status satisfies `check`.
pub async fn wait_status(h: &Harness, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let api: Api<kube::core::DynamicObject> = Api::all_with(
        h.kube.client(),
        &kube::core::ApiResource::erase::<BucketEncryptionPolicy>(&()),
    );
    let mut last = Value::Null;
    for _ in 0..400 {
        if let Ok(object) = api.get(name).await {
            last = object.data["status"].clone();
            if check(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("policy {name} never reached {what}; last status: {last:#}");
}

/// Events about a policy (in whatever namespace the recorder put them), as (reason, note).
pub async fn events(h: &Harness, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::all(h.kube.client());
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}
