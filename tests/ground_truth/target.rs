//! The two servers a scenario runs on (the in-process test server and the real
//! apiextensions-apiserver named by `REAL_KUBECONFIG`), and what a scenario records: each step's
//! outcome, normalised only where the servers legitimately differ (uids, timestamps,
//! resourceVersions).

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::kube::KubeApiServer;

/// The environment variable naming the real server's kubeconfig.
pub const REAL_KUBECONFIG: &str = "REAL_KUBECONFIG";

/// One server to run a scenario on.
pub struct Target {
    #[allow(dead_code)]
    pub name: &'static str,
    pub client: kube::Client,
    /// The in-process server (kept alive), or `None` for the real one.
    pub test_server: Option<KubeApiServer>,
}

/// The CRD resource itself.
pub fn crd_resource() -> ApiResource {
    ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    }
}

/// The kubeconfig path of the real server; a clear failure without it (never a silent pass).
pub fn real_kubeconfig() -> String {
    std::env::var(REAL_KUBECONFIG).unwrap_or_else(|_| {
        panic!(
            "{REAL_KUBECONFIG} is not set: the ground-truth tests compare the test server with a real \
             apiextensions-apiserver; run them with scripts/apiserver-check"
        )
    })
}

impl Target {
    /// A fresh in-process test server.
    pub async fn test_server() -> Self {
        oss_encryption_operator::install_tls_provider();
        let server = KubeApiServer::start().await;
        Self {
            name: "test server",
            client: server.client(),
            test_server: Some(server),
        }
    }

    /// The real server of `REAL_KUBECONFIG`.
    pub async fn real() -> Self {
        Self::real_at(&real_kubeconfig()).await
    }

    /// A real server by the path of its kubeconfig.
    pub async fn real_at(path: &str) -> Self {
        oss_encryption_operator::install_tls_provider();
        let kubeconfig =
            kube::config::Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("kubeconfig {path}: {e}"));
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("kubeconfig {path}: {e}"));
        Self {
            name: "real server",
            client: kube::Client::try_from(config).expect("a client for the real server"),
            test_server: None,
        }
    }

    /// Installs a CRD and waits until its resources are served.
    pub async fn install_crd(&self, crd: &Value) {
        if let Some(server) = &self.test_server {
            server.register_crd(crd);
            return;
        }
        let crds: kube::Api<DynamicObject> = kube::Api::all_with(self.client.clone(), &crd_resource());
        let name = crd["metadata"]["name"].as_str().expect("a CRD name");
        crds.patch(
            name,
            &PatchParams::apply("ground-truth").force(),
            &Patch::Apply(crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing {name}: {e}"));
        let version = crd["spec"]["versions"][0]["name"].as_str().unwrap();
        let group = crd["spec"]["group"].as_str().unwrap();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
        let path = format!("/apis/{group}/{version}/{plural}?limit=1");
        for _ in 0..200 {
            let request = axum::http::Request::get(&path).body(Vec::new()).unwrap();
            if self.client.request::<Value>(request).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} is not served after 10 s");
    }

    /// A raw request (for what kube's parameter types cannot say, such as `fieldValidation`).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<Value, kube::Error> {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(serde_json::to_vec(body).unwrap())
            .unwrap();
        self.client.request::<Value>(request).await
    }
}

/// The labelled outcomes of a scenario's steps on one server.
#[derive(Default)]
pub struct Record {
    pub steps: Vec<(String, Value)>,
}

impl Record {
    /// Records the outcome of a call (an object, a list, or the refusal).
    pub fn push<T: serde::Serialize>(
        &mut self,
        label: impl Into<String>,
        result: &Result<T, kube::Error>,
    ) -> Option<Value> {
        let (value, ok) = match result {
            Ok(value) => (normalise(serde_json::to_value(value).unwrap()), true),
            Err(error) => (refusal(error), false),
        };
        self.steps.push((label.into(), value.clone()));
        ok.then_some(value)
    }

    /// Records an observation that is not a call's outcome.
    pub fn note(&mut self, label: impl Into<String>, value: Value) {
        self.steps.push((label.into(), value));
    }
}

/// A refusal as the fields the servers must agree on.
pub fn refusal(error: &kube::Error) -> Value {
    let kube::Error::Api(status) = error else {
        return json!({"client error": error.to_string()});
    };
    // The real server orders schema errors by Go map iteration (it varies from request to
    // request): causes are compared as a set, sorted, and a multi-error message rebuilt in
    // that order.
    let mut causes: Vec<(String, String, String)> = status
        .details
        .as_ref()
        .map(|d| {
            d.causes
                .iter()
                .map(|c| (c.field.clone(), without_versions(&c.message), c.reason.clone()))
                .collect()
        })
        .unwrap_or_default();
    causes.sort();
    let mut message = without_versions(&status.message);
    if causes.len() > 1
        && message.ends_with(']')
        && let Some(start) = message.find(": [")
    {
        let listed: Vec<String> = causes.iter().map(|(f, m, _)| format!("{f}: {m}")).collect();
        message = format!("{}: [{}]", &message[..start], listed.join(", "));
    }
    let causes: Vec<Value> = causes
        .into_iter()
        .map(|(field, message, reason)| json!({"reason": reason, "field": field, "message": message}))
        .collect();
    let details = status
        .details
        .as_ref()
        .map(|d| json!({"name": d.name, "group": d.group, "kind": d.kind}));
    json!({
        "code": status.code, "reason": status.reason, "status": status.status,
        "message": message, "details": details, "causes": causes,
    })
}

/// An object, list or Status with what legitimately differs replaced: uids, timestamps,
/// resourceVersions (kept as "set" where their presence matters).
pub fn normalise(mut value: Value) -> Value {
    fn metadata(meta: &mut Value) {
        let Some(meta) = meta.as_object_mut() else { return };
        for key in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "deletionTimestamp",
            "continue",
        ] {
            if let Some(v) = meta.get_mut(key) {
                *v = json!("<set>");
            }
        }
        if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
            for entry in entries {
                if let Some(time) = entry.get_mut("time") {
                    *time = json!("<set>");
                }
            }
        }
    }
    metadata(&mut value["metadata"]);
    if let Some(Value::Array(items)) = value.get_mut("items") {
        for item in items {
            metadata(&mut item["metadata"]);
        }
    }
    if let Some(uid) = value.pointer_mut("/details/uid") {
        *uid = json!("<set>");
    }
    value
}

/// A message with its resourceVersions (runs of 2+ digits after "version") replaced.
pub fn without_versions(message: &str) -> String {
    let pattern = regex::Regex::new(r"([rR]esource ?[vV]ersion:? ?)\d+( \(\d+\))?").unwrap();
    pattern.replace_all(message, "${1}<rv>").into_owned()
}

/// Fails, listing every step where the two records differ.
pub fn assert_agree(test: &Record, real: &Record) {
    let mut differences = Vec::new();
    for (i, ((label, a), (label_b, b))) in test.steps.iter().zip(&real.steps).enumerate() {
        assert_eq!(label, label_b, "the scenarios diverged at step {i}");
        if a != b {
            differences.push(format!(
                "step {i} `{label}`:\n  test server: {}\n  real server: {}",
                serde_json::to_string(a).unwrap(),
                serde_json::to_string(b).unwrap()
            ));
        }
    }
    assert_eq!(
        test.steps.len(),
        real.steps.len(),
        "the scenarios have different lengths"
    );
    assert!(
        differences.is_empty(),
        "{} of {} steps differ between the test server and the real server:\n{}",
        differences.len(),
        test.steps.len(),
        differences.join("\n")
    );
}

/// A name unique to this run, the same on both servers (so reruns on one real server do not
/// collide and the outcomes stay comparable).
pub fn run_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("gt{:06x}", fastrand::u32(..0xff_ffff)))
        .clone()
}
