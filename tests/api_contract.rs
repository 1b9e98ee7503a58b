//! The API contract as files: the committed CRD is the generated one, it is a valid
//! CustomResourceDefinition, and every example passes the controller's validation.

use oss_encryption_operator::api::{BucketEncryption, crd_yaml};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn committed_crd_is_the_generated_one() {
    let committed = std::fs::read_to_string(format!("{ROOT}/crds/bucketencryption.yaml")).unwrap();
    assert!(
        committed == crd_yaml(),
        "crds/bucketencryption.yaml is stale: run `cargo run -- crd > crds/bucketencryption.yaml`"
    );
}

#[test]
fn committed_policy_crd_is_the_generated_one() {
    let committed = std::fs::read_to_string(format!("{ROOT}/crds/bucketencryptionpolicy.yaml")).unwrap();
    assert!(
        committed == oss_encryption_operator::api::policy::crd_yaml(),
        "crds/bucketencryptionpolicy.yaml is stale: run `cargo run -- crd --policy > crds/bucketencryptionpolicy.yaml`"
    );
    let helm = std::fs::read_to_string(format!(
        "{ROOT}/deploy/helm/oss-encryption-operator/crds/bucketencryptionpolicy.yaml"
    ))
    .unwrap();
    assert_eq!(helm, committed, "the chart carries the same CRD");
}

#[test]
fn committed_grant_crd_is_the_generated_one() {
    let committed = std::fs::read_to_string(format!("{ROOT}/crds/bucketencryptiongrant.yaml")).unwrap();
    assert!(
        committed == oss_encryption_operator::api::grant::crd_yaml(),
        "crds/bucketencryptiongrant.yaml is stale: run `cargo run -- crd --grant > crds/bucketencryptiongrant.yaml`"
    );
    let kustomization = std::fs::read_to_string(format!("{ROOT}/crds/kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("- bucketencryptiongrant.yaml"),
        "crds/kustomization.yaml (and so deploy/crds) lists the grant CRD"
    );
}

#[test]
fn committed_crd_parses_as_a_custom_resource_definition() {
    let text = std::fs::read_to_string(format!("{ROOT}/crds/bucketencryption.yaml")).unwrap();
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_saphyr::from_str(&text).unwrap();
    assert_eq!(crd.spec.group, "oss.encryption.dev");
    let version = &crd.spec.versions[0];
    assert!(version.served && version.storage);
    let schema = version
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    assert!(schema.properties.as_ref().unwrap().contains_key("spec"));
}

fn documents(file: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", file.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

#[test]
fn every_example_deserialises_and_validates() {
    let mut resources = 0;
    let mut entries: Vec<_> = std::fs::read_dir(format!("{ROOT}/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        for document in documents(&path) {
            match document["kind"].as_str() {
                Some("BucketEncryption") => {
                    let resource: BucketEncryption = serde_json::from_value(document.clone())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    resource
                        .spec
                        .validate()
                        .unwrap_or_else(|e| panic!("{} ({:?}): {e}", path.display(), resource.metadata.name));
                    resources += 1;
                }
                Some("Secret") => {
                    let secret: k8s_openapi::api::core::v1::Secret =
                        serde_json::from_value(document).unwrap();
                    let data = secret.string_data.unwrap();
                    assert!(data.contains_key("accessKeyId") && data.contains_key("accessKeySecret"));
                }
                Some("BucketEncryptionPolicy") => {
                    let policy: oss_encryption_operator::api::policy::BucketEncryptionPolicy =
                        serde_json::from_value(document)
                            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    policy
                        .spec
                        .validate()
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                other => panic!("{}: unexpected kind {other:?}", path.display()),
            }
        }
    }
    assert!(
        resources >= 6,
        "examples cover every algorithm and policy (found {resources})"
    );
}

#[test]
fn invalid_specs_fail_with_clear_messages() {
    let base = serde_json::json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
        "metadata": {"name": "x", "namespace": "n"},
        "spec": {"bucket": "good-bucket", "region": "cn-hangzhou", "algorithm": "AES256"}
    });
    let cases = [
        (serde_json::json!({"bucket": "ab"}), "spec.bucket"),
        (serde_json::json!({"region": "Hangzhou"}), "spec.region"),
        (
            serde_json::json!({"kmsMasterKeyId": "k"}),
            "only allowed with algorithm KMS",
        ),
        (
            serde_json::json!({"algorithm": "SM4", "kmsDataEncryption": "SM4"}),
            "spec.kmsDataEncryption",
        ),
        (
            serde_json::json!({"endpoint": "https://evil.example/path"}),
            "spec.endpoint",
        ),
        (serde_json::json!({"resyncInterval": "5s"}), "minimum of 30s"),
    ];
    for (change, expected) in cases {
        let mut document = base.clone();
        for (k, v) in change.as_object().unwrap() {
            document["spec"][k] = v.clone();
        }
        let resource: BucketEncryption = serde_json::from_value(document).unwrap();
        let err = resource.spec.validate().unwrap_err().to_string();
        assert!(err.contains(expected), "{err} lacks {expected}");
    }
    // Values outside the enums are refused when the document is read.
    let mut bad = base.clone();
    bad["spec"]["algorithm"] = "DES".into();
    let err = serde_json::from_value::<BucketEncryption>(bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("DES"), "{err}");
}

#[test]
fn the_readme_reference_is_the_generated_one() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let start = readme
        .find("<!-- reference:start -->\n")
        .expect("README has the reference markers")
        + 25;
    let end = readme.find("<!-- reference:end -->").unwrap();
    assert!(
        readme[start..end] == oss_encryption_operator::api::reference_markdown(),
        "README's resource reference is stale: paste `oss-encryption-operator crd --reference`"
    );
}
