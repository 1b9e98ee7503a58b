//! The Kubernetes API test server, proven two ways: a replay of every recorded exchange with a
//! real kube-apiserver v1.36 (`tests/data/kube-api/transcripts.json`), and the real `kube::Api`
//! and `kube::runtime::watcher` running against it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::kube::KubeApiServer;
use support::kube::patch::{fields_v1, json_patch, leaf_fields, merge_patch, paths_of, remove_at};

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

const TRANSCRIPTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/kube-api/transcripts.json"
);

/// Steps not replayed, each with its reason: none (admission is implemented, so the
/// `validation` scenario is replayed too).
const SKIPPED: &[(&str, usize, &str)] = &[];

/// The order the scenarios were recorded in (each builds on the state the previous ones left).
const SCENARIO_ORDER: &[&str] = &[
    "setup",
    "crud",
    "validation",
    "spec_status",
    "watch",
    "watch_errors",
    "core",
    "unknown",
];

#[test]
fn transcript_copy_equals_the_shared_original() {
    let original = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/kube-api/transcripts.json"
    );
    if let Ok(original) = std::fs::read(original) {
        assert_eq!(
            std::fs::read(TRANSCRIPTS).unwrap(),
            original,
            "tests/data/kube-api copy is stale"
        );
    }
}

/// Maps the recorded resourceVersions to the test server's, learned from matching responses.
#[derive(Default)]
struct Versions {
    recorded_to_ours: HashMap<String, String>,
    /// Last resourceVersion seen per object name: (recorded, ours).
    last: HashMap<String, (u64, u64)>,
}

impl Versions {
    fn learn(&mut self, recorded: &Value, ours: &Value) {
        if let (Some(r), Some(o)) = (
            recorded
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str),
            ours.pointer("/metadata/resourceVersion").and_then(Value::as_str),
        ) {
            self.recorded_to_ours.insert(r.to_owned(), o.to_owned());
        }
    }

    fn map(&self, recorded: &str) -> String {
        self.recorded_to_ours
            .get(recorded)
            .cloned()
            .unwrap_or_else(|| recorded.to_owned())
    }

    fn rewrite_path(&self, path: &str) -> String {
        let Some((base, query)) = path.split_once('?') else {
            return path.to_owned();
        };
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some(("resourceVersion", v)) => format!("resourceVersion={}", self.map(v)),
                _ => p.to_owned(),
            })
            .collect();
        format!("{base}?{}", params.join("&"))
    }

    fn rewrite_body(&self, body: &mut Value) {
        if let Some(rv) = body.pointer_mut("/metadata/resourceVersion")
            && let Some(text) = rv.as_str()
        {
            *rv = json!(self.map(text));
        }
    }
}

fn rv_of(v: &Value) -> Option<u64> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// Compares what matters of one answer; returns the differences found.
fn compare(
    where_: &str,
    custom: bool,
    recorded: &Value,
    status: u16,
    ours: &Value,
    versions: &mut Versions,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, a: Value, b: Value| {
        if a != b {
            diffs.push(format!("{where_}: {what}: recorded {a}, ours {b}"));
        }
    };
    check("status code", recorded["status"].clone(), json!(status));
    let body = &recorded["body"];
    if !body.is_object() {
        if body.is_string() {
            check("plain-text body", body.clone(), ours.clone());
        }
        return diffs;
    }
    check("kind", body["kind"].clone(), ours["kind"].clone());
    if body["kind"] == "Status" {
        for field in ["status", "reason", "code"] {
            check(field, body[field].clone(), ours[field].clone());
        }
        // Admission answers for custom resources: every cause (reason, field, message) and the
        // message itself. (Built-in types' own validation is only sketched here: status, reason
        // and code are compared for them.)
        if custom && matches!(body["reason"].as_str(), Some("Invalid" | "BadRequest")) {
            check("message", body["message"].clone(), ours["message"].clone());
            check(
                "causes",
                body["details"]["causes"].clone(),
                ours["details"]["causes"].clone(),
            );
        }
        if body["reason"] == "Conflict"
            && body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Apply failed"))
        {
            check(
                "apply conflict message",
                body["message"].clone(),
                ours["message"].clone(),
            );
        }
        return diffs;
    }
    if body["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
        let names = |v: &Value| -> Value {
            json!(v["items"].as_array().map(|items| {
                items
                    .iter()
                    .map(|i| i["metadata"]["name"].clone())
                    .collect::<Vec<_>>()
            }))
        };
        check("item names", names(body), names(ours));
        check(
            "continue set",
            json!(!body["metadata"]["continue"].as_str().unwrap_or("").is_empty()),
            json!(!ours["metadata"]["continue"].as_str().unwrap_or("").is_empty()),
        );
        check(
            "list resourceVersion set",
            json!(body["metadata"]["resourceVersion"].is_string()),
            json!(ours["metadata"]["resourceVersion"].is_string()),
        );
        return diffs;
    }
    for field in ["generation", "finalizers", "deletionGracePeriodSeconds"] {
        check(
            field,
            body["metadata"][field].clone(),
            ours["metadata"][field].clone(),
        );
    }
    check(
        "deletionTimestamp set",
        json!(body["metadata"]["deletionTimestamp"].is_string()),
        json!(ours["metadata"]["deletionTimestamp"].is_string()),
    );
    for field in ["uid", "creationTimestamp"] {
        check(
            &format!("{field} set"),
            json!(body["metadata"][field].is_string()),
            json!(ours["metadata"][field].is_string()),
        );
    }
    if let (Some(name), Some(r), Some(o)) = (body["metadata"]["name"].as_str(), rv_of(body), rv_of(ours)) {
        if let Some(&(prev_r, prev_o)) = versions.last.get(name) {
            check(
                "resourceVersion relation",
                json!(r.cmp(&prev_r) as i8),
                json!(o.cmp(&prev_o) as i8),
            );
        }
        versions.last.insert(name.to_owned(), (r, o));
    }
    versions.learn(body, ours);
    diffs
}

/// (type, name) of a watch event; an ERROR carries its Status code and reason.
fn event_summary(event: &Value) -> (String, String) {
    let kind = event["type"].as_str().unwrap_or("").to_owned();
    let object = &event["object"];
    let detail = match kind.as_str() {
        "ERROR" => format!("{} {}", object["code"], object["reason"]),
        "BOOKMARK" => format!(
            "initial-events-end={}",
            object
                .pointer("/metadata/annotations/k8s.io~1initial-events-end")
                .and_then(Value::as_str)
                .unwrap_or("")
        ),
        _ => object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
    };
    (kind, detail)
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    request: &Value,
    versions: &Versions,
) -> (u16, reqwest::Response) {
    let method: reqwest::Method = request["method"].as_str().unwrap().parse().unwrap();
    let path = versions.rewrite_path(request["path"].as_str().unwrap());
    let mut builder = http
        .request(method, format!("{base}{path}"))
        .header("user-agent", "python-requests/2.32.3");
    if let Some(content_type) = request["contentType"].as_str() {
        let mut body = request["body"].clone();
        versions.rewrite_body(&mut body);
        builder = builder
            .header("content-type", content_type)
            .body(body.to_string());
    }
    let response = builder.send().await.expect("the test server answers");
    (response.status().as_u16(), response)
}

async fn read_body(response: reqwest::Response) -> Value {
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let text = response.text().await.unwrap();
    if is_json {
        serde_json::from_str(&text).unwrap()
    } else {
        json!(text)
    }
}

async fn read_watch(response: reqwest::Response) -> Vec<(String, String)> {
    let text = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .expect("the watch ends by its timeoutSeconds")
        .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| event_summary(&serde_json::from_str(l).unwrap()))
        .collect()
}

#[tokio::test]
async fn replays_every_recorded_scenario() {
    oss_encryption_operator::install_tls_provider();
    let transcripts: Value = serde_json::from_str(&std::fs::read_to_string(TRANSCRIPTS).unwrap()).unwrap();
    let server = KubeApiServer::start().await;
    let base = server.url();
    let http = reqwest::Client::new();
    let mut versions = Versions::default();
    let mut diffs = Vec::new();
    let mut replayed = 0;

    let scenarios = transcripts["scenarios"].as_object().unwrap();
    let mut recorded_names: Vec<&String> = scenarios.keys().collect();
    recorded_names.sort();
    let mut ordered: Vec<&str> = SCENARIO_ORDER.to_vec();
    ordered.sort();
    assert_eq!(
        recorded_names, ordered,
        "SCENARIO_ORDER names every recorded scenario"
    );
    for scenario in SCENARIO_ORDER {
        let content = &scenarios[*scenario];
        let steps = content["steps"].as_array().unwrap();
        let is_watch = |s: &Value| s["request"]["path"].as_str().unwrap().contains("watch=true");
        // In the `watch` scenario the watch (last step) was opened right after the list (first step).
        let deferred_watch = *scenario == "watch" && is_watch(steps.last().unwrap());
        let mut open_watch = None;
        for (index, step) in steps.iter().enumerate() {
            if SKIPPED.iter().any(|(s, i, _)| s == scenario && *i == index) {
                continue;
            }
            if deferred_watch && index == steps.len() - 1 {
                break;
            }
            let where_ = format!("{scenario}[{index}] {}", step["note"].as_str().unwrap_or(""));
            let (status, response) = send(&http, &base, &step["request"], &versions).await;
            if is_watch(step) && step["response"].get("events").is_some() {
                let ours = read_watch(response).await;
                let recorded: Vec<(String, String)> = step["response"]["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(event_summary)
                    .collect();
                if status != step["response"]["status"].as_u64().unwrap() as u16 || ours != recorded {
                    diffs.push(format!(
                        "{where_}: events: recorded {recorded:?}, ours {ours:?} (status {status})"
                    ));
                }
            } else {
                let warnings: Vec<String> = response
                    .headers()
                    .get_all("warning")
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_owned))
                    .collect();
                let recorded_warning = step["response"]["warning"].as_str();
                if recorded_warning.map(|w| vec![w.to_owned()]).unwrap_or_default() != warnings {
                    diffs.push(format!(
                        "{where_}: Warning header: recorded {recorded_warning:?}, ours {warnings:?}"
                    ));
                }
                let ours = read_body(response).await;
                let custom = step["request"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/apis/oss.encryption.dev/"));
                diffs.extend(compare(
                    &where_,
                    custom,
                    &step["response"],
                    status,
                    &ours,
                    &mut versions,
                ));
            }
            replayed += 1;
            if deferred_watch && index == 0 {
                let watch = steps.last().unwrap();
                let (status, response) = send(&http, &base, &watch["request"], &versions).await;
                assert_eq!(status, 200);
                open_watch = Some((watch, tokio::spawn(read_watch(response))));
            }
        }
        if let Some((watch, events)) = open_watch {
            let ours = events.await.unwrap();
            let recorded: Vec<(String, String)> = watch["response"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(event_summary)
                .collect();
            if ours != recorded {
                diffs.push(format!(
                    "{scenario}: watch events: recorded {recorded:?}, ours {ours:?}"
                ));
            }
            replayed += 1;
        }
    }
    println!("replayed {replayed} steps, skipped {}", SKIPPED.len());
    assert!(
        diffs.is_empty(),
        "differences from the real API server:\n{}",
        diffs.join("\n")
    );
    assert_eq!(
        replayed + SKIPPED.len(),
        62,
        "every recorded step is replayed or listed as skipped"
    );
}

// ---------------------------------------------------------------------------------------------
// The real kube client and runtime against the server
// ---------------------------------------------------------------------------------------------

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "bucketencryptions.oss.encryption.dev"},
        "spec": {"group": "oss.encryption.dev", "scope": "Namespaced",
            "names": {"kind": "BucketEncryption", "plural": "bucketencryptions", "singular": "bucketencryption"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })
}

fn resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "oss.encryption.dev".into(),
        version: "v1alpha1".into(),
        api_version: "oss.encryption.dev/v1alpha1".into(),
        kind: "BucketEncryption".into(),
        plural: "bucketencryptions".into(),
    }
}

fn object(name: &str, finalizers: &[&str]) -> kube::core::DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
        "metadata": {"name": name, "finalizers": finalizers},
        "spec": {"bucket": format!("{name}-bucket"), "region": "cn-hangzhou", "algorithm": "AES256"}
    }))
    .unwrap()
}

async fn started() -> (KubeApiServer, kube::Api<kube::core::DynamicObject>) {
    oss_encryption_operator::install_tls_provider();
    let server = KubeApiServer::start().await;
    server.register_crd(&crd());
    let api = kube::Api::namespaced_with(server.client(), "team-a", &resource());
    (server, api)
}

/// A reflector over the API, fed by the real runtime watcher (with its default backoff).
fn spawn_reflector(
    api: &kube::Api<kube::core::DynamicObject>,
) -> (
    kube::runtime::reflector::Store<kube::core::DynamicObject>,
    tokio::task::JoinHandle<()>,
) {
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let writer = reflector::store::Writer::new(resource());
    let reader = writer.as_reader();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    (reader, task)
}

/// Waits (bounded) until the reflector holds `n` objects.
async fn wait_for_objects(reader: &kube::runtime::reflector::Store<kube::core::DynamicObject>, n: usize) {
    for _ in 0..400 {
        if reader.state().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the reflector never reached {n} objects (has {})",
        reader.state().len()
    );
}

#[tokio::test]
async fn kube_api_crud_status_and_conflicts() {
    use kube::api::{Patch, PatchParams, PostParams};
    let (server, api) = started().await;
    let created = api
        .create(&PostParams::default(), &object("logs", &[]))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let err = api
        .create(&PostParams::default(), &object("logs", &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err}"
    );
    let err = api.get("missing").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
        "{err}"
    );

    // Status through server-side apply; the spec part is ignored and generation stays.
    let status = json!({"apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
        "status": {"observedGeneration": 1, "lastRequestId": "R1"}, "spec": {"algorithm": "None"}});
    let params = PatchParams::apply("oss-encryption-operator").force();
    let after = api
        .patch_status("logs", &params, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(after.data["status"]["lastRequestId"], "R1");
    assert_eq!(after.data["spec"]["algorithm"], "AES256");
    assert_eq!(after.metadata.generation, Some(1));
    // Applying the same again is a no-op: same resourceVersion.
    let again = api
        .patch_status("logs", &params, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, after.metadata.resource_version);

    // A spec change moves generation; a stale resourceVersion in a replace is a conflict.
    let mut stale = api.get("logs").await.unwrap();
    api.patch(
        "logs",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"algorithm": "KMS"}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("logs").await.unwrap().metadata.generation, Some(2));
    stale.data["spec"]["algorithm"] = json!("SM4");
    let err = api
        .replace("logs", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );

    assert_eq!(server.count("create", "bucketencryptions"), 2);
    assert_eq!(server.count("patch", "bucketencryptions/status"), 2);
    assert_eq!(server.count("update", "bucketencryptions"), 1);
}

#[tokio::test]
async fn secrets_events_and_leases_through_typed_apis() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::PostParams;
    let (server, _) = started().await;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(server.client(), "team-a");
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "oss-credentials"},
        "stringData": {"accessKeyId": "AKID", "accessKeySecret": "s3cr3t"}}))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let read = secrets.get("oss-credentials").await.unwrap();
    let data = read.data.unwrap();
    assert_eq!(data["accessKeySecret"].0, b"s3cr3t");
    assert!(read.string_data.is_none());

    let leases: kube::Api<Lease> = kube::Api::namespaced(server.client(), "team-a");
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}}))
            .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("leader", &PostParams::default(), &renewed)
        .await
        .unwrap();
    let err = leases
        .replace("leader", &PostParams::default(), &renewed)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "stale lease renewals conflict: {err}"
    );
}

#[tokio::test]
async fn finalizer_guarded_delete() {
    use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
    let (_server, api) = started().await;
    api.create(
        &PostParams::default(),
        &object("guarded", &["oss.encryption.dev/cleanup"]),
    )
    .await
    .unwrap();
    let deleting = api.delete("guarded", &DeleteParams::default()).await.unwrap();
    let marked = deleting.left().expect("with a finalizer the object stays");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.generation, Some(2));
    let err = api
        .patch(
            "guarded",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["oss.encryption.dev/cleanup", "x.dev/other"]}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 422), "{err}");
    api.patch(
        "guarded",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(matches!(api.get("guarded").await.unwrap_err(), kube::Error::Api(s) if s.code == 404));
    // Without finalizers the delete is immediate.
    api.create(&PostParams::default(), &object("plain", &[]))
        .await
        .unwrap();
    assert!(
        api.delete("plain", &DeleteParams::default())
            .await
            .unwrap()
            .is_right()
    );
}

#[tokio::test]
async fn watcher_survives_dropped_streams_and_410_by_relisting() {
    use kube::api::PostParams;
    let (server, api) = started().await;
    let (reader, task) = spawn_reflector(&api);
    api.create(&PostParams::default(), &object("one", &[]))
        .await
        .unwrap();
    wait_for_objects(&reader, 1).await;
    let lists_before = server.count("list", "bucketencryptions");

    server.drop_watches();
    api.create(&PostParams::default(), &object("two", &[]))
        .await
        .unwrap();
    wait_for_objects(&reader, 2).await;

    // History compacted and streams cut: the re-watch gets 410 and the watcher re-lists.
    server.compact();
    server.drop_watches();
    api.create(&PostParams::default(), &object("three", &[]))
        .await
        .unwrap();
    wait_for_objects(&reader, 3).await;
    task.abort();
    let lists_after = server.count("list", "bucketencryptions");
    assert!(
        lists_after > lists_before,
        "a 410 forces a re-list ({lists_before} → {lists_after})"
    );
    assert!(
        server.count("watch", "bucketencryptions") >= 3,
        "{:?}",
        server.counters()
    );
}

#[tokio::test]
async fn injected_failures_and_latency_are_seen_by_the_client() {
    use kube::api::PostParams;
    let (mut server, api) = started().await;
    server.set_faults(support::kube::KubeFaults {
        fail_rate: 1.0,
        fail_with: vec![500],
        writes_only: true,
        ..Default::default()
    });
    let err = api
        .create(&PostParams::default(), &object("failing", &[]))
        .await
        .unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 500), "{err}");
    assert!(
        api.list(&Default::default()).await.is_ok(),
        "reads pass when only writes fail"
    );

    // 429 carries Retry-After, as the real server's priority-and-fairness answers do.
    server.set_faults(support::kube::KubeFaults {
        fail_rate: 1.0,
        fail_with: vec![429],
        latency: Duration::from_millis(50),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .get(format!(
            "{}/apis/oss.encryption.dev/v1alpha1/namespaces/team-a/bucketencryptions",
            server.url()
        ))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "latency was added"
    );
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let status: Value = response.json().await.unwrap();
    assert_eq!(
        (status["reason"].as_str(), status["code"].as_u64()),
        (Some("TooManyRequests"), Some(429))
    );

    server.set_faults(support::kube::KubeFaults::default());
    api.create(&PostParams::default(), &object("fine", &[]))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Patch mechanics
// ---------------------------------------------------------------------------------------------

#[test]
fn merge_patch_rfc7386_examples() {
    let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
    let mut list = json!({"a": [1, 2]});
    merge_patch(&mut list, &json!({"a": [3]}));
    assert_eq!(list, json!({"a": [3]}));
}

#[test]
fn json_patch_operations_are_all_or_nothing() {
    let mut doc = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"x": 1}});
    json_patch(
        &mut doc,
        &json!([
            {"op": "replace", "path": "/spec/x", "value": 2},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
            {"op": "test", "path": "/spec/x", "value": 2},
            {"op": "copy", "from": "/spec/x", "path": "/spec/y"},
            {"op": "move", "from": "/spec/y", "path": "/spec/z"},
            {"op": "add", "path": "/metadata/labels", "value": {"a~b/c": "1"}}
        ]),
    )
    .unwrap();
    assert_eq!(
        doc,
        json!({"metadata": {"finalizers": ["b", "c"], "labels": {"a~b/c": "1"}}, "spec": {"x": 2, "z": 2}})
    );
    let before = doc.clone();
    let failing = json!([{"op": "remove", "path": "/metadata/labels/a~0b~1c"}, {"op": "test", "path": "/spec/x", "value": 9}]);
    assert!(json_patch(&mut doc, &failing).is_err());
    assert_eq!(doc, before, "a failed patch changes nothing");
}

#[test]
fn field_sets_round_trip_through_fields_v1() {
    let object = json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}},
        "status": {"lastRequestId": "R", "conditions": [{"type": "Ready"}]}});
    let mut paths = leaf_fields(&object);
    paths.sort();
    let expected: Vec<Vec<String>> = vec![
        vec!["metadata".into(), "labels".into(), "a".into()],
        vec!["status".into(), "conditions".into()],
        vec!["status".into(), "lastRequestId".into()],
    ];
    assert_eq!(paths, expected);
    let mut back = paths_of(&fields_v1(&paths));
    back.sort();
    assert_eq!(back, paths);
    let mut doc = json!({"status": {"a": {"b": 1}}, "spec": {}});
    remove_at(&mut doc, &["status".into(), "a".into(), "b".into()]);
    assert_eq!(doc, json!({"spec": {}}), "removing a leaf prunes emptied maps");
}

// ---------------------------------------------------------------------------------------------
// Scale and wiring
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn holds_ten_thousand_objects_paged_and_watched() {
    use kube::api::ListParams;
    let (server, api) = started().await;
    {
        let mut store = server.store();
        let def = store
            .def("oss.encryption.dev", "v1alpha1", "bucketencryptions")
            .unwrap()
            .clone();
        for i in 0..10_000 {
            let object = serde_json::to_value(object(&format!("bucket-{i:05}"), &[])).unwrap();
            store
                .create(
                    &def,
                    "team-a",
                    object,
                    &support::kube::store::Writer::default(),
                    false,
                )
                .unwrap();
        }
    }
    let mut seen = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.unwrap();
        seen += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(seen, 10_000);
    assert_eq!(server.count("list", "bucketencryptions"), 20);

    let response = reqwest::Client::new()
        .get(format!(
            "{}/apis/oss.encryption.dev/v1alpha1/bucketencryptions?watch=true&timeoutSeconds=1",
            server.url()
        ))
        .send()
        .await
        .unwrap();
    let events = read_watch(response).await;
    assert_eq!(events.len(), 10_000);
    assert!(events.iter().all(|(kind, _)| kind == "ADDED"));
}

#[tokio::test]
async fn a_kubeconfig_file_points_a_client_at_the_server() {
    oss_encryption_operator::install_tls_provider();
    let server = KubeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, server.kubeconfig_yaml()).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "36"));
    server.stop().await;
    assert!(
        client.apiserver_version().await.is_err(),
        "a stopped server answers nothing"
    );
}

#[tokio::test]
async fn periodic_watch_drops_do_not_lose_events() {
    use kube::api::PostParams;
    let (mut server, api) = started().await;
    server.set_faults(support::kube::KubeFaults {
        drop_watches_every: Some(Duration::from_millis(150)),
        ..Default::default()
    });
    let (reader, task) = spawn_reflector(&api);
    for i in 0..20 {
        api.create(&PostParams::default(), &object(&format!("churn-{i}"), &[]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_objects(&reader, 20).await;
    task.abort();
    assert!(
        server.count("watch", "bucketencryptions") >= 2,
        "streams were re-opened: {:?}",
        server.counters()
    );
}
