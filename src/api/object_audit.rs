//! `spec.objectAudit` and `status.objects`: the controller's opt-in object encryption audit
//! (DESIGN 3.7), the same figures as the CLI's `audit`. No I/O here.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The shortest audit interval accepted: an audit lists the whole bucket.
pub const MIN_AUDIT_INTERVAL: Duration = Duration::from_secs(3600);
/// The longest audit interval accepted (30 days).
pub const MAX_AUDIT_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The interval when `objectAudit` does not set one.
pub const DEFAULT_AUDIT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The largest sample: the sample is held in memory while the listing streams by, and 10,000
/// objects already bound the share below the rule within about one percentage point.
pub const MAX_SAMPLE: i32 = 10_000;
/// The most CMK ids `status.objects.byKey` lists (the largest counts; `byKeyOmitted` counts
/// the objects under the rest), so a bucket under many keys cannot grow the status unbounded.
pub const MAX_KEYS_SHOWN: usize = 20;
/// Object keys in the status are cut to this many characters.
pub const KEY_SHOWN: usize = 256;

/// The object encryption audit a resource asks for.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectAuditSpec {
    /// How often the bucket's objects are audited, as a duration such as 12h or 168h, from 1h
    /// to 720h (30 days). Absent means 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    #[x_kube(validation = kube::core::Rule::new(
        "duration(self) >= duration('1h') && duration(self) <= duration('720h')"
    ).message("objectAudit.interval must be between 1h and 720h"))]
    pub interval: Option<String>,

    /// Examine a uniform random sample of this many objects (1 to 10000) and report the share
    /// below the rule with a 95% interval. Absent means every object is examined (exact counts;
    /// one HeadObject per object per audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub sample: Option<i32>,
}

/// `spec.objectAudit`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectAudit {
    pub interval: Duration,
    /// `None` = every object.
    pub sample: Option<i32>,
}

impl ObjectAuditSpec {
    /// The audit asked for, or every problem (naming the field).
    pub fn validate(&self) -> Result<ObjectAudit, Vec<String>> {
        let mut problems = Vec::new();
        let interval = match self.interval.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
            None => DEFAULT_AUDIT_INTERVAL,
            Some(text) => {
                let shown: String = text.chars().take(32).collect();
                match super::parse_duration(text) {
                    Some(d) if (MIN_AUDIT_INTERVAL..=MAX_AUDIT_INTERVAL).contains(&d) => d,
                    Some(_) => {
                        problems.push(format!(
                            "spec.objectAudit.interval: {shown} is not between 1h and 720h"
                        ));
                        DEFAULT_AUDIT_INTERVAL
                    }
                    None => {
                        problems.push(format!(
                            "spec.objectAudit.interval: {shown:?} is not a duration such as 12h or 168h"
                        ));
                        DEFAULT_AUDIT_INTERVAL
                    }
                }
            }
        };
        if let Some(n) = self.sample
            && !(1..=MAX_SAMPLE).contains(&n)
        {
            problems.push(format!(
                "spec.objectAudit.sample: {n} is not between 1 and {MAX_SAMPLE}"
            ));
        }
        if problems.is_empty() {
            Ok(ObjectAudit {
                interval,
                sample: self.sample,
            })
        } else {
            Err(problems)
        }
    }
}

/// What the last object audit found (written only by the audit, under its own field manager).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectAuditStatus {
    /// When the audit ended.
    pub last_audit_time: String,
    /// The rule the objects were held against (the spec's, as `algorithm` spells it, with the
    /// key id).
    pub rule: String,
    /// The sample size asked for; absent when every object was examined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<i32>,
    /// Objects the listing held.
    pub listed: i64,
    /// Objects whose encryption was read (HeadObject).
    pub examined: i64,
    /// Examined objects weaker than the rule (None < AES256 = SM4 < KMS).
    pub below_rule: i64,
    /// Examined objects by encryption.
    pub by_encryption: EncryptionCounts,
    /// KMS objects per CMK id as HeadObject names it (OSS's managed key included); the 20
    /// largest counts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_key: BTreeMap<String, i64>,
    /// KMS objects under CMKs that byKey leaves out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub by_key_omitted: i64,
    /// The examined object below the rule modified longest ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_below_rule: Option<DatedObject>,
    /// The examined object below the rule modified last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_below_rule: Option<DatedObject>,
    /// With a sample: the share of the bucket's objects below the rule, estimated, with its 95%
    /// Wilson score interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_rule_share: Option<BelowRuleShare>,
    /// Requests the audit made.
    pub requests: AuditRequests,
    /// Objects that could not be read, and a listing that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors: i64,
    /// The first error, with the OSS code and request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Examined objects by encryption: exactly the CLI's `byEncryption` keys.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct EncryptionCounts {
    /// Not encrypted (no x-oss-server-side-encryption).
    #[serde(rename = "None")]
    pub none: i64,
    /// SSE-OSS with AES-256.
    #[serde(rename = "AES256")]
    pub aes256: i64,
    /// SSE-OSS with SM4.
    #[serde(rename = "SM4")]
    pub sm4: i64,
    /// KMS without SM4 data encryption, whatever the CMK.
    #[serde(rename = "KMS")]
    pub kms: i64,
    /// KMS with SM4 data encryption.
    #[serde(rename = "KMS+SM4")]
    pub kms_sm4: i64,
}

/// An object, named and dated.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatedObject {
    /// The object key (printable, at most 256 characters).
    pub key: String,
    /// LastModified as the listing gives it.
    pub last_modified: String,
}

/// A sample's share below the rule, as percentages (`"3.70%"`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BelowRuleShare {
    /// The sample's share below the rule.
    pub estimate: String,
    /// Lower bound of the 95% Wilson score interval.
    pub low: String,
    /// Upper bound of the 95% Wilson score interval.
    pub high: String,
}

/// Requests one audit made (what it cost).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRequests {
    /// ListObjectsV2 pages (1,000 objects each).
    pub list_objects: i64,
    /// HeadObject requests (one per examined object).
    pub head_object: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_defaults_to_24h_and_is_bounded_from_1h_to_720h() {
        let spec = |interval: Option<&str>, sample| ObjectAuditSpec {
            interval: interval.map(Into::into),
            sample,
        };
        assert_eq!(
            spec(None, None).validate(),
            Ok(ObjectAudit {
                interval: DEFAULT_AUDIT_INTERVAL,
                sample: None
            })
        );
        assert_eq!(
            spec(Some("1h"), Some(1)).validate().unwrap().interval,
            MIN_AUDIT_INTERVAL
        );
        assert_eq!(
            spec(Some("720h"), Some(MAX_SAMPLE)).validate().unwrap().interval,
            MAX_AUDIT_INTERVAL
        );
        assert_eq!(
            spec(Some("59m"), None).validate(),
            Err(vec![
                "spec.objectAudit.interval: 59m is not between 1h and 720h".to_owned()
            ])
        );
        let both = spec(Some("soon"), Some(0)).validate().unwrap_err();
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[0].contains("\"soon\" is not a duration"), "{both:?}");
        assert!(
            both[1].contains("sample: 0 is not between 1 and 10000"),
            "{both:?}"
        );
        assert!(spec(None, Some(MAX_SAMPLE + 1)).validate().is_err());
    }

    #[test]
    fn the_status_spells_the_clis_keys() {
        let status = ObjectAuditStatus {
            by_encryption: EncryptionCounts {
                kms_sm4: 2,
                ..EncryptionCounts::default()
            },
            ..ObjectAuditStatus::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json["byEncryption"],
            serde_json::json!({"None": 0, "AES256": 0, "SM4": 0, "KMS": 0, "KMS+SM4": 2})
        );
        assert!(json.get("byKey").is_none() && json.get("errors").is_none());
    }
}
