//! The project's real CRD (`crds/bucketencryption.yaml`) installed on the Kubernetes API test
//! server, whose admission validates like kube-apiserver's: each schema and CEL rule bites, and
//! every example is admitted.

mod support;

use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use serde_json::{Value, json};
use support::kube::KubeApiServer;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn committed_crd() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/crds/bucketencryption.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

async fn server() -> (KubeApiServer, kube::Api<DynamicObject>) {
    oss_encryption_operator::install_tls_provider();
    let server = KubeApiServer::start().await;
    server.register_crd(&committed_crd());
    let resource = ApiResource::erase::<oss_encryption_operator::api::BucketEncryption>(&());
    let api = kube::Api::namespaced_with(server.client(), "team-a", &resource);
    (server, api)
}

fn object(name: &str, spec: Value) -> DynamicObject {
    let mut document = json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"bucket": format!("{name}-bucket"), "region": "cn-hangzhou", "algorithm": "AES256"}
    });
    for (k, v) in spec.as_object().unwrap() {
        document["spec"][k] = v.clone();
    }
    serde_json::from_value(document).unwrap()
}

/// The 422 causes of a refused request as (field, message).
fn causes(error: &kube::Error) -> Vec<(String, String)> {
    let kube::Error::Api(status) = error else {
        panic!("not an API error: {error}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    status
        .details
        .as_ref()
        .map(|d| {
            d.causes
                .iter()
                .map(|c| (c.field.clone(), c.message.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn refused(api: &kube::Api<DynamicObject>, name: &str, spec: Value) -> Vec<(String, String)> {
    let error = api
        .create(&PostParams::default(), &object(name, spec))
        .await
        .unwrap_err();
    causes(&error)
}

#[tokio::test]
async fn every_example_is_admitted_with_its_defaults() {
    let (server, _) = server().await;
    for entry in std::fs::read_dir(format!("{ROOT}/examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            if document["kind"] != "BucketEncryption" {
                continue;
            }
            let namespace = document["metadata"]["namespace"].as_str().unwrap_or("default");
            let resource = ApiResource::erase::<oss_encryption_operator::api::BucketEncryption>(&());
            let api: kube::Api<DynamicObject> =
                kube::Api::namespaced_with(server.client(), namespace, &resource);
            let object: DynamicObject = serde_json::from_value(document.clone()).unwrap();
            let created = api
                .create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let spec = &created.data["spec"];
            for (field, default) in [
                ("deletionPolicy", "Retain"),
                ("managementPolicy", "Manage"),
                ("signatureVersion", "V4"),
            ] {
                if document["spec"].get(field).is_none() {
                    assert_eq!(spec[field], default, "{}: default of {field}", path.display());
                }
            }
        }
    }
}

#[tokio::test]
async fn bucket_and_region_are_immutable() {
    let (_server, api) = server().await;
    api.create(&PostParams::default(), &object("fixed", json!({})))
        .await
        .unwrap();
    for (field, value, message) in [
        ("bucket", "other-bucket", "bucket is immutable"),
        ("region", "cn-shanghai", "region is immutable"),
    ] {
        let error = api
            .patch(
                "fixed",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {field: value}})),
            )
            .await
            .unwrap_err();
        assert_eq!(
            causes(&error),
            [(
                format!("spec.{field}"),
                format!("Invalid value: \"{value}\": {message}")
            )]
        );
    }
    // Unchanged values pass the transition rules; other fields may change.
    api.patch(
        "fixed",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"bucket": "fixed-bucket", "algorithm": "SM4"}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn weakening_the_algorithm_needs_allow_downgrade_in_the_same_edit() {
    let (_server, api) = server().await;
    let edit = |spec: Value| {
        let api = api.clone();
        async move {
            api.patch(
                "guarded",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
        }
    };
    // Creating any rule is fine: transition rules run on updates only.
    api.create(
        &PostParams::default(),
        &object("guarded", json!({"algorithm": "KMS"})),
    )
    .await
    .unwrap();
    for weaker in [
        json!({"algorithm": "AES256"}),
        json!({"algorithm": "SM4"}),
        json!({"algorithm": "None"}),
    ] {
        let error = edit(weaker.clone()).await.unwrap_err();
        let causes = causes(&error);
        assert_eq!(causes.len(), 1, "{weaker}: {causes:?}");
        assert_eq!(causes[0].0, "spec", "{weaker}");
        assert!(
            causes[0].1.contains("algorithm cannot be weakened")
                && causes[0].1.contains("allowDowngrade: true"),
            "{weaker}: {causes:?}"
        );
    }
    // Lateral moves within KMS are no downgrade.
    edit(json!({"kmsMasterKeyId": "key-2", "kmsDataEncryption": "SM4"}))
        .await
        .unwrap();
    // The same edit sets allowDowngrade: accepted.
    edit(json!({"algorithm": "SM4", "kmsMasterKeyId": null, "kmsDataEncryption": null, "allowDowngrade": true}))
        .await
        .unwrap();
    edit(json!({"allowDowngrade": false})).await.unwrap();
    // AES256 <-> SM4 is lateral, upwards is always fine, down again is refused.
    edit(json!({"algorithm": "AES256"})).await.unwrap();
    edit(json!({"algorithm": "KMS"})).await.unwrap();
    assert!(edit(json!({"algorithm": "None"})).await.is_err());
    let stored = api.get("guarded").await.unwrap();
    assert_eq!(
        stored.data["spec"]["algorithm"], "KMS",
        "a refused edit changes nothing"
    );
}

#[tokio::test]
async fn key_id_and_data_encryption_only_with_kms() {
    let (_server, api) = server().await;
    assert_eq!(
        refused(&api, "keyed", json!({"kmsMasterKeyId": "k-1"})).await,
        [(
            "spec".to_owned(),
            "Invalid value: kmsMasterKeyId is only allowed with algorithm KMS".to_owned()
        )]
    );
    assert_eq!(
        refused(&api, "data", json!({"kmsDataEncryption": "SM4"})).await,
        [(
            "spec".to_owned(),
            "Invalid value: kmsDataEncryption is only allowed with algorithm KMS".to_owned()
        )]
    );
    // An empty key id is the OSS-managed key: fine with any algorithm.
    api.create(
        &PostParams::default(),
        &object("empty-key", json!({"kmsMasterKeyId": ""})),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &object(
            "kms",
            json!({"algorithm": "KMS", "kmsMasterKeyId": "k-1", "kmsDataEncryption": "SM4"}),
        ),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn resync_interval_is_bounded() {
    let (_server, api) = server().await;
    for (i, ok) in ["30s", "90s", "1h30m", "1.5h", "24h", "86400s", "1440m"]
        .iter()
        .enumerate()
    {
        api.create(
            &PostParams::default(),
            &object(&format!("ok-{i}"), json!({"resyncInterval": ok})),
        )
        .await
        .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (i, bad) in ["29s", "24h1s", "25h", "500ms", "5000000000000000h"]
        .iter()
        .enumerate()
    {
        let causes = refused(&api, &format!("bad-{i}"), json!({"resyncInterval": bad})).await;
        assert!(
            causes.len() == 1 && causes[0].0 == "spec.resyncInterval",
            "{bad}: {causes:?}"
        );
    }
    let causes = refused(&api, "pattern", json!({"resyncInterval": "5 minutes"})).await;
    assert!(causes[0].1.contains("should match"), "{causes:?}");
    let causes = refused(&api, "long", json!({"resyncInterval": "1".repeat(40) + "s"})).await;
    assert_eq!(
        causes[0],
        (
            "spec.resyncInterval".to_owned(),
            "Too long: may not be more than 32 bytes".to_owned()
        ),
        "{causes:?}"
    );
}

#[tokio::test]
async fn object_audit_interval_and_sample_are_bounded() {
    let (_server, api) = server().await;
    let admitted = [
        json!({}),
        json!({"interval": "1h"}),
        json!({"interval": "24h", "sample": 1000}),
        json!({"interval": "720h", "sample": 10000}),
        json!({"interval": "90m", "sample": 1}),
        json!({"sample": 500}),
    ];
    for (i, audit) in admitted.iter().enumerate() {
        api.create(
            &PostParams::default(),
            &object(&format!("ok-{i}"), json!({"objectAudit": audit})),
        )
        .await
        .unwrap_or_else(|e| panic!("{audit}: {e}"));
    }
    let refusals = [
        (
            json!({"interval": "59m"}),
            "spec.objectAudit.interval",
            "between 1h and 720h",
        ),
        (
            json!({"interval": "721h"}),
            "spec.objectAudit.interval",
            "between 1h and 720h",
        ),
        (
            json!({"interval": "daily"}),
            "spec.objectAudit.interval",
            "should match",
        ),
        (
            json!({"sample": 0}),
            "spec.objectAudit.sample",
            "should be greater than or equal to 1",
        ),
        (
            json!({"sample": 10001}),
            "spec.objectAudit.sample",
            "should be less than or equal to 10000",
        ),
        (
            json!({"sample": "all"}),
            "spec.objectAudit.sample",
            "must be of type integer",
        ),
    ];
    for (i, (audit, field, says)) in refusals.iter().enumerate() {
        let causes = refused(&api, &format!("bad-{i}"), json!({"objectAudit": audit})).await;
        // (A value off the pattern also fails the CEL duration conversion: a second cause.)
        assert!(
            causes[0].0 == *field && causes[0].1.contains(says),
            "{audit}: {causes:?}"
        );
    }
    // The controller checks the same bounds (an object admitted before the CRD said so).
    let spec: oss_encryption_operator::api::BucketEncryptionSpec = serde_json::from_value(json!({
        "bucket": "b-1", "region": "cn-hangzhou", "algorithm": "KMS",
        "objectAudit": {"interval": "30m", "sample": 20000}
    }))
    .unwrap();
    let problems = spec.validate().unwrap_err().0;
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[tokio::test]
async fn enums_patterns_and_required_fields() {
    let (_server, api) = server().await;
    let causes = refused(&api, "des", json!({"algorithm": "DES"})).await;
    assert_eq!(causes[0].0, "spec.algorithm");
    assert!(
        causes[0].1.starts_with("Unsupported value: \"DES\""),
        "{causes:?}"
    );
    assert_eq!(
        causes.last().unwrap().0,
        "<nil>",
        "CEL is not run on a blocked object"
    );
    let causes = refused(&api, "upper", json!({"bucket": "Upper_Case"})).await;
    assert_eq!(causes[0].0, "spec.bucket");
    let mut missing = object("missing", json!({}));
    missing.data["spec"].as_object_mut().unwrap().remove("region");
    let error = api.create(&PostParams::default(), &missing).await.unwrap_err();
    assert_eq!(
        crate::causes(&error)[0],
        ("spec.region".into(), "Required value".into())
    );
}

#[tokio::test]
async fn unknown_fields_are_pruned_or_refused_when_strict() {
    let (server, api) = server().await;
    let params = PostParams::default();
    let created = api
        .create(&params, &object("pruned", json!({"color": "blue"})))
        .await
        .unwrap();
    assert!(created.data["spec"].get("color").is_none(), "pruned");
    // kube's PostParams has no fieldValidation; kubectl --validate=strict sends it like this.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/apis/oss.encryption.dev/v1alpha1/namespaces/team-a/bucketencryptions?fieldValidation=Strict",
            server.url()
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_string(&object("strict", json!({"color": "blue"}))).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let status: kube::core::Status = response.json().await.unwrap();
    assert_eq!(status.reason, "BadRequest");
    assert!(
        status.message.contains("unknown field \"spec.color\""),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn status_writes_are_checked_against_the_status_schema_only() {
    let (server, api) = server().await;
    // An object admission would refuse (stored with admission off, as before a stricter CRD).
    server.set_admission(false);
    api.create(
        &PostParams::default(),
        &object("legacy", json!({"kmsMasterKeyId": "k"})),
    )
    .await
    .unwrap();
    server.set_admission(true);
    let params = PatchParams::apply("oss-encryption-operator").force();
    let status = |value: Value| json!({"apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption", "status": value});
    api.patch_status(
        "legacy",
        &params,
        &Patch::Apply(status(json!({"observedGeneration": 1, "driftCorrections": 0}))),
    )
    .await
    .expect("spec rules do not run on status writes");
    let error = api
        .patch_status(
            "legacy",
            &params,
            &Patch::Apply(status(json!({"observedGeneration": "one"}))),
        )
        .await
        .unwrap_err();
    // As the real server: an apply whose values the schema's types cannot hold fails before
    // admission, building the typed patch.
    let kube::Error::Api(status) = error else {
        panic!("{error}")
    };
    assert_eq!(status.code, 500, "{status:?}");
    assert!(
        status.message.starts_with("failed to create typed patch object")
            && status
                .message
                .ends_with(".status.observedGeneration: expected numeric (int or float), got string"),
        "{}",
        status.message
    );
    // A merge patch of the same value reaches the status schema: 422 on that field.
    let error = api
        .patch_status(
            "legacy",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": "one"}})),
        )
        .await
        .unwrap_err();
    let causes = causes(&error);
    assert_eq!(causes[0].0, "status.observedGeneration", "{causes:?}");
}

#[tokio::test]
async fn a_crd_whose_rule_does_not_compile_is_refused() {
    oss_encryption_operator::install_tls_provider();
    let server = KubeApiServer::start().await;
    let mut crd = committed_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
        [0]["rule"] = json!("self.algorithm == ");
    let crds: kube::Api<DynamicObject> = kube::Api::all_with(
        server.client(),
        &ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        },
    );
    let object: DynamicObject = serde_json::from_value(crd).unwrap();
    let error = crds.create(&PostParams::default(), &object).await.unwrap_err();
    let kube::Error::Api(status) = error else { panic!() };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("compilation failed"),
        "{}",
        status.message
    );
}

/// A CRD of its own, for the rule options the project's CRD does not use.
fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "self.min <= self.max", "messageExpression": "'min ' + (self.min > self.max ? 'exceeds' : 'within') + ' max'", "fieldPath": ".min"},
                            {"rule": "!has(self.forbidden)", "message": "not allowed", "reason": "FieldValueForbidden", "fieldPath": ".forbidden"},
                            {"rule": "!has(oldSelf.locked) || self.locked == oldSelf.locked", "message": "locked cannot change"}
                        ],
                        "properties": {
                            "min": {"type": "integer", "minimum": 0},
                            "max": {"type": "integer", "maximum": 100},
                            "mode": {"type": "string", "default": "auto"},
                            "note": {"type": "string", "nullable": true},
                            "forbidden": {"type": "string"},
                            "locked": {"type": "string"},
                            "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "minLength": 1}}
                        }}
                }}}}]}
    })
}

#[tokio::test]
async fn message_expressions_reasons_field_paths_bounds_and_nulls() {
    oss_encryption_operator::install_tls_provider();
    let server = KubeApiServer::start().await;
    server.register_crd(&widget_crd());
    let resource = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(server.client(), "team-a", &resource);
    let widget = |name: &str, spec: Value| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": name}, "spec": spec}))
        .unwrap()
    };
    let create = |name: &'static str, spec: Value| {
        let api = api.clone();
        let object = widget(name, spec);
        async move { api.create(&PostParams::default(), &object).await }
    };
    let error = create("inverted", json!({"min": 7, "max": 3})).await.unwrap_err();
    assert_eq!(
        causes(&error),
        [("spec.min".to_owned(), "Invalid value: min exceeds max".to_owned())]
    );
    let error = create("forbidden", json!({"min": 1, "max": 2, "forbidden": "x"}))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &error else {
        panic!()
    };
    let cause = &status.details.as_ref().unwrap().causes[0];
    assert_eq!(
        (
            cause.reason.as_str(),
            cause.field.as_str(),
            cause.message.as_str()
        ),
        ("FieldValueForbidden", "spec.forbidden", "Forbidden: not allowed")
    );
    let error = create("bounds", json!({"min": -1, "max": 101, "tags": ["a", "", "c"]}))
        .await
        .unwrap_err();
    let fields: Vec<String> = causes(&error).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        ["spec.max", "spec.min", "spec.tags", "spec.tags[1]", "<nil>"],
        "a list over maxItems blocks CEL, as on the real server: {error}"
    );
    // A null in a nullable field stays; in a non-nullable one it is pruned and defaulted.
    let created = create("nulls", json!({"min": 1, "max": 2, "note": null, "mode": null}))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["note"], Value::Null);
    assert!(created.data["spec"].as_object().unwrap().contains_key("note"));
    assert_eq!(created.data["spec"]["mode"], "auto");
    // The transition rule runs on updates only, and only where the old value exists.
    create("locked", json!({"min": 1, "max": 2, "locked": "a"}))
        .await
        .unwrap();
    let error = api
        .patch(
            "locked",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"locked": "b"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        causes(&error),
        [(
            "spec".to_owned(),
            "Invalid value: locked cannot change".to_owned()
        )]
    );
}

#[tokio::test]
async fn the_policy_crd_validates_its_rules_like_bucket_encryption() {
    oss_encryption_operator::install_tls_provider();
    let server = KubeApiServer::start().await;
    let text = std::fs::read_to_string(format!("{ROOT}/crds/bucketencryptionpolicy.yaml")).unwrap();
    server.register_crd(&serde_saphyr::from_str::<Value>(&text).unwrap());
    let resource = ApiResource::erase::<oss_encryption_operator::api::policy::BucketEncryptionPolicy>(&());
    let api: kube::Api<DynamicObject> = kube::Api::all_with(server.client(), &resource);
    let policy = |name: &str, spec: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionPolicy",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    };
    let created = api
        .create(
            &PostParams::default(),
            &policy(
                "good",
                json!({"rule": {"algorithm": "KMS", "kmsDataEncryption": "SM4"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["managementPolicy"], "Observe",
        "Observe by default"
    );
    for (spec, field, message) in [
        (
            json!({"rule": {"algorithm": "AES256", "kmsMasterKeyId": "k"}}),
            "spec.rule",
            "kmsMasterKeyId is only allowed with algorithm KMS",
        ),
        (
            json!({"rule": {"algorithm": "KMS"}, "accept": [{"algorithm": "SM4", "kmsDataEncryption": "SM4"}]}),
            "spec.accept[0]",
            "kmsDataEncryption is only allowed with algorithm KMS",
        ),
        (
            json!({"rule": {"algorithm": "KMS"}, "resyncInterval": "5s"}),
            "spec.resyncInterval",
            "resyncInterval must be between 30s and 24h",
        ),
    ] {
        let error = api
            .create(&PostParams::default(), &policy("bad", spec.clone()))
            .await
            .unwrap_err();
        let causes = causes(&error);
        assert!(
            causes.iter().any(|(f, m)| f == field && m.contains(message)),
            "{spec}: {causes:?}"
        );
    }
    let error = api
        .create(
            &PostParams::default(),
            &policy("bad", json!({"rule": {"algorithm": "DES"}})),
        )
        .await
        .unwrap_err();
    assert!(
        causes(&error).iter().any(|(f, _)| f == "spec.rule.algorithm"),
        "{:?}",
        causes(&error)
    );
}

#[tokio::test]
async fn the_grant_crd_refuses_what_grants_nothing() {
    oss_encryption_operator::install_tls_provider();
    let server = KubeApiServer::start().await;
    let text = std::fs::read_to_string(format!("{ROOT}/crds/bucketencryptiongrant.yaml")).unwrap();
    server.register_crd(&serde_saphyr::from_str::<Value>(&text).unwrap());
    let resource = ApiResource::erase::<oss_encryption_operator::api::grant::BucketEncryptionGrant>(&());
    let api: kube::Api<DynamicObject> = kube::Api::all_with(server.client(), &resource);
    let grant = |name: &str, spec: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionGrant",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    };
    let created = api
        .create(
            &PostParams::default(),
            &grant(
                "team-payments",
                json!({"namespaces": ["payments", "payments-staging"], "buckets": ["payments-*", "audit-logs-payments", "b?t", "*"]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["operatorCredentials"], "Deny",
        "the operator's credentials are denied unless a grant says Allow"
    );
    for (spec, field, message) in [
        (
            json!({"namespaces": [], "buckets": ["payments-*"]}),
            "spec.namespaces",
            "should have at least 1 items",
        ),
        (
            json!({"namespaces": ["payments"], "buckets": []}),
            "spec.buckets",
            "should have at least 1 items",
        ),
        (
            json!({"buckets": ["payments-*"]}),
            "spec.namespaces",
            "Required value",
        ),
        (
            json!({"namespaces": ["payments"]}),
            "spec.buckets",
            "Required value",
        ),
        (
            json!({"namespaces": ["Payments"], "buckets": ["payments-*"]}),
            "spec.namespaces[0]",
            "should match",
        ),
        (
            json!({"namespaces": ["payments"], "buckets": ["Payments-*"]}),
            "spec.buckets[0]",
            "should match",
        ),
        (
            json!({"namespaces": ["payments"], "buckets": ["ok-*", "-payments"]}),
            "spec.buckets[1]",
            "should match",
        ),
        (
            json!({"namespaces": ["payments"], "buckets": ["payments_[0-9]"]}),
            "spec.buckets[0]",
            "should match",
        ),
        (
            json!({"namespaces": ["payments"], "buckets": [""]}),
            "spec.buckets[0]",
            "at least 1 chars long",
        ),
        (
            json!({"namespaces": ["payments"], "buckets": ["a".repeat(64)]}),
            "spec.buckets[0]",
            "may not be more than 63",
        ),
        (
            json!({"namespaces": ["payments"], "buckets": ["payments-*"], "operatorCredentials": "Maybe"}),
            "spec.operatorCredentials",
            "Unsupported value: \"Maybe\"",
        ),
    ] {
        let error = api
            .create(&PostParams::default(), &grant("bad", spec.clone()))
            .await
            .unwrap_err();
        let causes = causes(&error);
        assert!(
            causes.iter().any(|(f, m)| f == field && m.contains(message)),
            "{spec}: {causes:?}"
        );
    }
}
