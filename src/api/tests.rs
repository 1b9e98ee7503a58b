use super::*;

fn spec(algorithm: Algorithm) -> BucketEncryptionSpec {
    BucketEncryptionSpec {
        bucket: "audit-logs".into(),
        region: "cn-hangzhou".into(),
        endpoint: None,
        algorithm,
        kms_master_key_id: None,
        kms_data_encryption: None,
        credentials: None,
        deletion_policy: DeletionPolicy::Retain,
        management_policy: ManagementPolicy::Manage,
        resync_interval: None,
        signature_version: SignatureVersionSpec::V4,
        allow_downgrade: false,
        object_audit: None,
    }
}

/// The downgrade transition rule sits on the spec (it compares algorithm with allowDowngrade),
/// names oldSelf (so the API server runs it on updates only), and ranks every algorithm.
#[test]
fn the_crd_carries_the_downgrade_transition_rule() {
    let crd = serde_json::to_value(BucketEncryption::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = spec["x-kubernetes-validations"].as_array().unwrap();
    let rule = rules
        .iter()
        .find(|r| r["rule"] == DOWNGRADE_RULE)
        .expect("the downgrade rule is on the spec");
    assert!(rule["message"].as_str().unwrap().contains("allowDowngrade: true"));
    assert!(DOWNGRADE_RULE.contains("oldSelf.algorithm"), "a transition rule");
    for (algorithm, rank) in [("None", 0), ("AES256", 1), ("SM4", 1), ("KMS", 2)] {
        let entry = format!("'{algorithm}': {rank}");
        assert_eq!(
            DOWNGRADE_RULE.matches(&entry).count(),
            2,
            "{entry} in both rankings"
        );
    }
    assert_eq!(spec["properties"]["allowDowngrade"]["type"], "boolean");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    for bad in ["", "5", "m", "5d", "five minutes", "5m3"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn valid_specs_become_desired_states() {
    let desired = spec(Algorithm::Aes256).validate().unwrap();
    assert_eq!(desired.rule, Some(EncryptionRule::new(SseAlgorithm::Aes256)));
    assert_eq!(desired.endpoint.host(), "oss-cn-hangzhou.aliyuncs.com");
    assert_eq!(spec(Algorithm::None).validate().unwrap().rule, None);

    let mut kms = spec(Algorithm::Kms);
    kms.kms_master_key_id = Some(" ".into());
    kms.kms_data_encryption = Some(KmsDataEncryption::Sm4);
    kms.endpoint = Some("oss-cn-hangzhou-internal.aliyuncs.com".into());
    kms.resync_interval = Some("2m".into());
    kms.signature_version = SignatureVersionSpec::V1;
    let desired = kms.validate().unwrap();
    assert_eq!(
        desired.rule,
        Some(EncryptionRule::kms(None, Some(DataEncryption::Sm4))),
        "blank key = OSS-managed"
    );
    assert_eq!(desired.endpoint.host(), "oss-cn-hangzhou-internal.aliyuncs.com");
    assert_eq!(desired.resync_interval, Some(Duration::from_secs(120)));
    assert_eq!(desired.signature_version, SignatureVersion::V1);
}

/// A change that makes a valid spec invalid.
type Breakage = fn(&mut BucketEncryptionSpec);

#[test]
fn invalid_specs_name_every_problem() {
    let cases: Vec<(Breakage, &str)> = vec![
        (|s| s.bucket = "Bad_Bucket".into(), "spec.bucket"),
        (|s| s.region = "CN".into(), "spec.region"),
        (|s| s.endpoint = Some("ftp://x".into()), "spec.endpoint"),
        (|s| s.kms_master_key_id = Some("k".into()), "spec.kmsMasterKeyId"),
        (
            |s| s.kms_data_encryption = Some(KmsDataEncryption::Sm4),
            "spec.kmsDataEncryption",
        ),
        (|s| s.resync_interval = Some("10s".into()), "minimum of 30s"),
        (|s| s.resync_interval = Some("soon".into()), "spec.resyncInterval"),
        (
            |s| {
                s.credentials = Some(CredentialsSource {
                    secret_ref: SecretReference { name: " ".into() },
                })
            },
            "spec.credentials.secretRef.name",
        ),
    ];
    for (break_it, expected) in cases {
        let mut s = spec(Algorithm::Aes256);
        break_it(&mut s);
        let err = s.validate().unwrap_err();
        assert!(err.to_string().contains(expected), "{err} lacks {expected}");
    }
    let mut many = spec(Algorithm::Sm4);
    many.bucket = "x".into();
    many.kms_master_key_id = Some("k".into());
    assert_eq!(
        many.validate().unwrap_err().0.len(),
        2,
        "every problem is reported at once"
    );
}

#[test]
fn observed_rule_forms() {
    assert_eq!(ObservedRule::from_rule(None).algorithm, "None");
    let kms = EncryptionRule::kms(Some("k"), Some(DataEncryption::Sm4));
    let observed = ObservedRule::from_rule(Some(&kms));
    assert_eq!(
        (
            observed.algorithm.as_str(),
            observed.kms_master_key_id.as_str(),
            observed.kms_data_encryption.as_str()
        ),
        ("KMS", "k", "SM4")
    );
}

#[test]
fn the_crd_carries_the_contract() {
    let crd = serde_json::to_value(BucketEncryption::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "bucketencryptions.oss.encryption.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!(["bkenc"]));
    assert_eq!(crd["spec"]["names"]["categories"], serde_json::json!(["oss"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Bucket",
            "Region",
            "Algorithm",
            "Ready",
            "Synced",
            "In-Sync",
            "Age",
            "KMS-Key",
            "Observed",
            "Last-Sync"
        ]
    );
    let text = serde_json::to_string(&crd).unwrap();
    for rule in [
        "self == oldSelf",
        "kmsMasterKeyId is only allowed with algorithm KMS",
        "kmsDataEncryption is only allowed",
    ] {
        assert!(text.contains(rule), "CRD lacks {rule}");
    }
    let spec_schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec_schema["properties"]["algorithm"]["enum"],
        serde_json::json!(["None", "AES256", "KMS", "SM4"])
    );
    assert_eq!(spec_schema["properties"]["deletionPolicy"]["default"], "Retain");
    assert!(
        spec_schema["properties"]["bucket"]["description"]
            .as_str()
            .unwrap()
            .contains("Immutable")
    );
    let required: Vec<&str> = spec_schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(required, ["algorithm", "bucket", "region"]);
}

/// Every property in the schema has a description (they become `kubectl explain` text).
#[test]
fn every_field_is_described() {
    fn walk(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in properties {
                let here = format!("{path}.{name}");
                if child.get("description").is_none()
                    && !["metadata", "apiVersion", "kind"].contains(&name.as_str())
                {
                    missing.push(here.clone());
                }
                walk(child, &here, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    let crd = serde_json::to_value(BucketEncryption::crd()).unwrap();
    let mut missing = Vec::new();
    walk(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        "",
        &mut missing,
    );
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}
