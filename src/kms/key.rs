//! A CMK as DescribeKey reports it, and the pure rule for whether OSS can use it for a bucket.

use std::fmt;

use serde::Deserialize;

/// The fields of `KeyMetadata` the operator reads (by name; others are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct KeyMetadata {
    /// The key id (returned even when the request named an alias or ARN).
    pub key_id: String,
    /// `acs:kms:<region>:<account>:key/<KeyId>`.
    pub arn: String,
    /// `Enabled`, `Disabled`, `PendingDeletion`, `PendingImport`.
    pub key_state: String,
    /// `Aliyun_AES_256`, `Aliyun_SM4`, `RSA_2048`, …
    pub key_spec: String,
    /// `ENCRYPT/DECRYPT` or `SIGN/VERIFY`.
    pub key_usage: String,
    /// Set only while PendingDeletion.
    pub delete_date: String,
}

/// The DescribeKey answer body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeKeyResponse {
    pub key_metadata: KeyMetadata,
    #[serde(default)]
    pub request_id: String,
}

impl KeyMetadata {
    /// The region in the ARN (`acs:kms:<region>:…`), if the ARN has that shape.
    pub fn region(&self) -> Option<&str> {
        let mut parts = self.arn.split(':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("acs"), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
            _ => None,
        }
    }
}

/// One reason OSS cannot use a key for a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// KMS does not know the key or alias (in the bucket's region).
    NotFound,
    /// `KeyState` is not `Enabled`.
    NotEnabled { state: String, delete_date: String },
    /// Not an `ENCRYPT/DECRYPT` key.
    WrongUsage(String),
    /// Not a symmetric spec (`Aliyun_AES_*`, `Aliyun_SM4`): OSS cannot generate data keys with it.
    NotSymmetric(String),
    /// The key lives in another region than the bucket (or its ARN names none).
    WrongRegion { key: String, bucket: String },
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("KMS does not know this key in the bucket's region"),
            Self::NotEnabled { state, delete_date } if !delete_date.is_empty() => write!(
                f,
                "its state is {state} (deletion on {delete_date}), not Enabled: uploads will fail"
            ),
            Self::NotEnabled { state, .. } => {
                write!(f, "its state is {state}, not Enabled: uploads will fail")
            }
            Self::WrongUsage(usage) => write!(
                f,
                "its usage is {usage}, not ENCRYPT/DECRYPT: OSS cannot encrypt with it"
            ),
            Self::NotSymmetric(spec) => write!(
                f,
                "its spec {spec} is not symmetric (Aliyun_AES_* or Aliyun_SM4): OSS cannot generate data keys with it"
            ),
            Self::WrongRegion { key, bucket } if key.is_empty() => write!(
                f,
                "its ARN names no region, so it cannot be shown to be in the bucket's region {bucket}"
            ),
            Self::WrongRegion { key, bucket } => write!(
                f,
                "it is in region {key}, the bucket in {bucket}: OSS needs a key in the bucket's region"
            ),
        }
    }
}

/// Whether a spec is a symmetric key spec OSS can use.
pub fn is_symmetric(spec: &str) -> bool {
    spec == "Aliyun_SM4"
        || spec
            .strip_prefix("Aliyun_AES_")
            .is_some_and(|bits| !bits.is_empty())
}

/// Every reason OSS cannot use the key for a bucket in `bucket_region`; empty = usable. An SM4
/// *data* rule does not need an `Aliyun_SM4` key (the CMK only wraps data keys).
pub fn problems(key: &KeyMetadata, bucket_region: &str) -> Vec<KeyProblem> {
    let mut found = Vec::new();
    if key.key_state != "Enabled" {
        found.push(KeyProblem::NotEnabled {
            state: key.key_state.clone(),
            delete_date: key.delete_date.clone(),
        });
    }
    if key.key_usage != "ENCRYPT/DECRYPT" {
        found.push(KeyProblem::WrongUsage(key.key_usage.clone()));
    }
    if !is_symmetric(&key.key_spec) {
        found.push(KeyProblem::NotSymmetric(key.key_spec.clone()));
    }
    let region = key.region().unwrap_or_default();
    if region != bucket_region {
        found.push(KeyProblem::WrongRegion {
            key: region.to_owned(),
            bucket: bucket_region.to_owned(),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(state: &str, spec: &str, usage: &str, region: &str) -> KeyMetadata {
        KeyMetadata {
            key_id: "key-1".into(),
            arn: format!("acs:kms:{region}:1540355698840000:key/key-1"),
            key_state: state.into(),
            key_spec: spec.into(),
            key_usage: usage.into(),
            delete_date: String::new(),
        }
    }

    /// Every state × spec × usage × region, against an expectation written out per dimension.
    #[test]
    fn usability_over_every_state_spec_usage_and_region() {
        let states = [
            ("Enabled", true),
            ("Disabled", false),
            ("PendingDeletion", false),
            ("PendingImport", false),
        ];
        let specs = [
            ("Aliyun_AES_256", true),
            ("Aliyun_AES_192", true),
            ("Aliyun_AES_128", true),
            ("Aliyun_SM4", true),
            ("RSA_2048", false),
            ("RSA_3072", false),
            ("RSA_4096", false),
            ("EC_P256", false),
            ("EC_P256K", false),
            ("EC_SM2", false),
            ("Aliyun_AES_", false),
            ("", false),
        ];
        let usages = [("ENCRYPT/DECRYPT", true), ("SIGN/VERIFY", false), ("", false)];
        let regions = [("cn-hangzhou", true), ("cn-shanghai", false), ("", false)];
        let mut cases = 0;
        for (state, state_ok) in states {
            for (spec, spec_ok) in specs {
                for (usage, usage_ok) in usages {
                    for (region, region_ok) in regions {
                        let found = problems(&key(state, spec, usage, region), "cn-hangzhou");
                        let expected = [!state_ok, !usage_ok, !spec_ok, !region_ok]
                            .iter()
                            .filter(|bad| **bad)
                            .count();
                        assert_eq!(
                            found.len(),
                            expected,
                            "{state} {spec} {usage} {region}: {found:?}"
                        );
                        assert_eq!(
                            found.is_empty(),
                            state_ok && spec_ok && usage_ok && region_ok,
                            "{state} {spec} {usage} {region}"
                        );
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 4 * 12 * 3 * 3);
    }

    #[test]
    fn problems_name_what_is_wrong() {
        let mut pending = key(
            "PendingDeletion",
            "Aliyun_AES_256",
            "ENCRYPT/DECRYPT",
            "cn-hangzhou",
        );
        pending.delete_date = "2026-12-07T00:00:00Z".into();
        let text = problems(&pending, "cn-hangzhou")[0].to_string();
        assert!(
            text.contains("PendingDeletion")
                && text.contains("2026-12-07")
                && text.contains("uploads will fail"),
            "{text}"
        );
        let foreign = problems(
            &key("Enabled", "Aliyun_AES_256", "ENCRYPT/DECRYPT", "cn-beijing"),
            "cn-hangzhou",
        );
        assert_eq!(
            foreign[0].to_string(),
            "it is in region cn-beijing, the bucket in cn-hangzhou: OSS needs a key in the bucket's region"
        );
        let no_arn = KeyMetadata {
            arn: "garbage".into(),
            ..key("Enabled", "Aliyun_SM4", "ENCRYPT/DECRYPT", "x")
        };
        assert_eq!(no_arn.region(), None);
        assert!(
            matches!(&problems(&no_arn, "cn-hangzhou")[..], [KeyProblem::WrongRegion { key, .. }] if key.is_empty())
        );
    }

    #[test]
    fn the_documented_answer_parses_by_name() {
        let body = r#"{"KeyMetadata": {"CreationDate": "2021-05-20T06:34:21Z", "Description": "", "KeyId": "05754286-3ba2-4fa6-8d41-4323aca6****",
  "KeySpec": "Aliyun_AES_256", "KeyState": "Enabled", "KeyUsage": "ENCRYPT/DECRYPT",
  "PrimaryKeyVersion": "515e0b0a-624f-45ab-92b5-54f9b551****", "DeleteDate": "", "Creator": "154035569884****",
  "Arn": "acs:kms:cn-hangzhou:154035569884****:key/05754286-3ba2-4fa6-8d41-4323aca6****", "Origin": "Aliyun_KMS",
  "MaterialExpireTime": "", "ProtectionLevel": "HSM", "LastRotationDate": "2021-05-20T06:34:21Z",
  "AutomaticRotation": "Disabled", "DeletionProtection": "Enabled"},
 "RequestId": "f1fdfa9d-bd49-418b-942f-8f3e3ec00a4f"}"#;
        let answer: DescribeKeyResponse = serde_json::from_str(body).unwrap();
        assert_eq!(answer.request_id, "f1fdfa9d-bd49-418b-942f-8f3e3ec00a4f");
        assert_eq!(answer.key_metadata.region(), Some("cn-hangzhou"));
        assert!(problems(&answer.key_metadata, "cn-hangzhou").is_empty());
    }
}
