//! The `BucketEncryption` API (`oss.encryption.dev/v1alpha1`): spec, status, conditions, the
//! controller-side validation, and CRD generation. No I/O here.

use std::time::Duration;

use kube::CustomResource;
use kube::CustomResourceExt;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::oss::endpoint::{self, Endpoint, EndpointKind};
use crate::oss::{DataEncryption, EncryptionRule, SignatureVersion, SseAlgorithm};

/// The API group.
pub const GROUP: &str = "oss.encryption.dev";
/// The finalizer present while `deletionPolicy: Delete`.
pub const FINALIZER: &str = "oss.encryption.dev/cleanup";
/// The shortest resync interval accepted.
pub const MIN_RESYNC: Duration = Duration::from_secs(30);
/// The longest resync interval accepted.
pub const MAX_RESYNC: Duration = Duration::from_secs(24 * 3600);

/// The CEL transition rule that refuses an edit weakening `algorithm` without `allowDowngrade`.
pub const DOWNGRADE_RULE: &str = "(has(self.allowDowngrade) && self.allowDowngrade) || \
     {'None': 0, 'AES256': 1, 'SM4': 1, 'KMS': 2}[self.algorithm] >= \
     {'None': 0, 'AES256': 1, 'SM4': 1, 'KMS': 2}[oldSelf.algorithm]";

/// Desired default encryption of one Alibaba Cloud OSS bucket.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oss.encryption.dev",
    version = "v1alpha1",
    kind = "BucketEncryption",
    plural = "bucketencryptions",
    singular = "bucketencryption",
    namespaced,
    status = "BucketEncryptionStatus",
    shortname = "bkenc",
    category = "oss",
    doc = "Keeps one Alibaba Cloud OSS bucket's default server-side encryption rule equal to this spec.",
    printcolumn = r#"{"name":"Bucket","type":"string","jsonPath":".spec.bucket"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Algorithm","type":"string","jsonPath":".spec.algorithm"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"In-Sync","type":"string","jsonPath":".status.conditions[?(@.type==\"InSync\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"KMS-Key","type":"string","priority":1,"jsonPath":".spec.kmsMasterKeyId"}"#,
    printcolumn = r#"{"name":"Observed","type":"string","priority":1,"jsonPath":".status.observed.algorithm"}"#,
    printcolumn = r#"{"name":"Last-Sync","type":"date","priority":1,"jsonPath":".status.lastSyncTime"}"#
)]
#[x_kube(validation = kube::core::Rule::new(
    "self.algorithm == 'KMS' || !has(self.kmsMasterKeyId) || self.kmsMasterKeyId == ''"
).message("kmsMasterKeyId is only allowed with algorithm KMS"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.algorithm == 'KMS' || !has(self.kmsDataEncryption)"
).message("kmsDataEncryption is only allowed with algorithm KMS"))]
#[x_kube(validation = kube::core::Rule::new(DOWNGRADE_RULE).message(
    "algorithm cannot be weakened (None < AES256 = SM4 < KMS) unless the same edit sets allowDowngrade: true"
))]
#[serde(rename_all = "camelCase")]
pub struct BucketEncryptionSpec {
    /// Name of the OSS bucket (3-63 characters of lowercase letters, digits and '-', starting and
    /// ending with a letter or digit). Immutable.
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    )]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("bucket is immutable"))]
    pub bucket: String,

    /// Region id of the bucket, such as cn-hangzhou. Used for the default endpoint and the V4
    /// signing scope. Immutable.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("region is immutable"))]
    pub region: String,

    /// Endpoint override: a host or an https URL (internal, dual-stack, accelerate, or an
    /// emulator). Empty means https://oss-<region>.aliyuncs.com. Must pass the operator's
    /// endpoint allow-list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub endpoint: Option<String>,

    /// The wanted default rule: None (the bucket must have no default rule), AES256 (SSE-OSS),
    /// KMS (SSE-KMS) or SM4.
    pub algorithm: Algorithm,

    /// CMK id, only with KMS. Empty means the OSS-managed CMK (shown as alias/acs/oss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub kms_master_key_id: Option<String>,

    /// Data encryption algorithm for KMS, only with KMS; the only value is SM4. Absent means AES256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_data_encryption: Option<KmsDataEncryption>,

    /// Where the OSS access key comes from. Absent means the operator's own credentials (when the
    /// operator allows that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsSource>,

    /// What deleting this resource does to the bucket: Retain leaves its rule as it is; Delete
    /// calls DeleteBucketEncryption first (guarded by a finalizer).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Manage corrects drift; Observe never writes to OSS and only reports differences.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// How often an in-sync bucket is re-read to detect drift, as a duration such as 90s, 5m or
    /// 1h30m, from 30s to 24h. Absent means the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    #[x_kube(validation = kube::core::Rule::new(
        "duration(self) >= duration('30s') && duration(self) <= duration('24h')"
    ).message("resyncInterval must be between 30s and 24h"))]
    pub resync_interval: Option<String>,

    /// Request signature version: V4 (OSS4-HMAC-SHA256, default) or V1.
    #[serde(default)]
    pub signature_version: SignatureVersionSpec,

    /// Must be true for the operator to remove or weaken the bucket's rule (None < AES256 = SM4 <
    /// KMS), whether the bucket is adopted, corrected after drift or the spec is edited; without
    /// it such a write is refused with Ready=False/DowngradeBlocked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_downgrade: bool,

    /// Opt-in: audit the bucket's objects every interval (ListObjectsV2 and HeadObject, never a
    /// write) and report in status.objects how many are encrypted below the rule. Absent means
    /// no audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_audit: Option<ObjectAuditSpec>,
}

/// The default encryption algorithm.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// No default rule.
    None,
    /// SSE-OSS with AES-256.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS.
    #[serde(rename = "KMS")]
    Kms,
    /// SSE-OSS with SM4.
    #[serde(rename = "SM4")]
    Sm4,
}

/// KMS data encryption.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmsDataEncryption {
    #[serde(rename = "SM4")]
    Sm4,
}

/// Where credentials come from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSource {
    /// A Secret in the same namespace with keys accessKeyId, accessKeySecret and optionally
    /// securityToken.
    pub secret_ref: SecretReference,
}

/// A Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What deletion does.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Leave the bucket's rule as it is.
    #[default]
    Retain,
    /// Remove the bucket's rule before the resource goes away.
    Delete,
}

/// Whether the operator writes to OSS.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManagementPolicy {
    /// Correct drift.
    #[default]
    Manage,
    /// Only observe and report.
    Observe,
}

/// Signature version.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureVersionSpec {
    #[default]
    V4,
    V1,
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BucketEncryptionStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (OSS matches the spec) and Synced (the last reconcile completed without error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The rule OSS last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedRule>,
    /// When OSS was last read by a reconcile that changed the status (an in-sync resync writes
    /// nothing, so this does not move while nothing changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// x-oss-request-id of the last OSS call of a reconcile that changed the status (what Alibaba
    /// Cloud support asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_id: Option<String>,
    /// How often the operator found the rule changed behind its back and put it right.
    #[serde(default)]
    pub drift_corrections: i64,
    /// The last object encryption audit (spec.objectAudit), written by the audit alone.
    // Boxed: most resources have none, and inline it would add 360 bytes to every cached object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Box<ObjectAuditStatus>>,
}

/// A rule as OSS reported it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObservedRule {
    /// None, AES256, KMS or SM4.
    pub algorithm: String,
    /// CMK id (empty = OSS-managed).
    #[serde(default)]
    pub kms_master_key_id: String,
    /// SM4 or empty.
    #[serde(default)]
    pub kms_data_encryption: String,
}

impl ObservedRule {
    /// The status form of an observed rule (`None` = no rule).
    pub fn from_rule(rule: Option<&EncryptionRule>) -> Self {
        match rule {
            None => Self {
                algorithm: "None".into(),
                ..Self::default()
            },
            Some(rule) => {
                let wire = crate::oss::xml::RawRule::from(rule);
                Self {
                    algorithm: wire.algorithm,
                    kms_master_key_id: wire.kms_master_key_id,
                    kms_data_encryption: wire.kms_data_encryption,
                }
            }
        }
    }
}

/// metav1.Condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type: `Ready`, `Synced`, `InSync` (BucketEncryption; a policy has `Compliant`
    /// instead), `Reconciling` and `Stalled` (kstatus); a BucketEncryptionGrant has `Ready` only.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// CamelCase reason, such as InSync or AccessDenied.
    pub reason: String,
    /// Human-readable detail, with the OSS error code and request id when there is one.
    #[serde(default)]
    pub message: String,
    /// When status last changed.
    pub last_transition_time: String,
    /// The generation this condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The spec, checked and turned into what the controller acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredState {
    pub bucket: String,
    pub region: String,
    pub endpoint: Endpoint,
    /// `None` = the bucket must have no rule.
    pub rule: Option<EncryptionRule>,
    pub signature_version: SignatureVersion,
    /// Explicit resync interval, if set.
    pub resync_interval: Option<Duration>,
    /// `spec.allowDowngrade`.
    pub allow_downgrade: bool,
    /// `spec.objectAudit`, checked (`None` = no audit).
    pub object_audit: Option<ObjectAudit>,
}

/// Why a spec is invalid (each message names the field).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {}", .0.join("; "))]
pub struct InvalidSpec(pub Vec<String>);

impl BucketEncryptionSpec {
    /// The controller's own validation (defence in depth behind admission): every problem, named.
    pub fn validate(&self) -> Result<DesiredState, InvalidSpec> {
        let mut problems = Vec::new();
        if let Err(e) = endpoint::validate_bucket_name(&self.bucket) {
            problems.push(format!("spec.bucket: {e}"));
        }
        if let Err(e) = endpoint::validate_region(&self.region) {
            problems.push(format!("spec.region: {e}"));
        }
        let endpoint = match self.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            Some(value) => Endpoint::parse(value)
                .map_err(|e| problems.push(format!("spec.endpoint: {e}")))
                .ok(),
            None => Endpoint::for_region(&self.region, EndpointKind::Public).ok(),
        };
        let key = self
            .kms_master_key_id
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if key.is_some() && self.algorithm != Algorithm::Kms {
            problems.push("spec.kmsMasterKeyId: only allowed with algorithm KMS".into());
        }
        if self.kms_data_encryption.is_some() && self.algorithm != Algorithm::Kms {
            problems.push("spec.kmsDataEncryption: only allowed with algorithm KMS".into());
        }
        let resync_interval = resync_interval(self.resync_interval.as_deref())
            .map_err(|problem| problems.push(problem))
            .unwrap_or(None);
        let object_audit = self
            .object_audit
            .as_ref()
            .and_then(|audit| audit.validate().map_err(|p| problems.extend(p)).ok());
        if let Some(secret) = &self.credentials
            && secret.secret_ref.name.trim().is_empty()
        {
            problems.push("spec.credentials.secretRef.name: must not be empty".into());
        }
        let rule = match self.algorithm {
            Algorithm::None => None,
            Algorithm::Aes256 => Some(EncryptionRule::new(SseAlgorithm::Aes256)),
            Algorithm::Sm4 => Some(EncryptionRule::new(SseAlgorithm::Sm4)),
            Algorithm::Kms => Some(EncryptionRule::kms(
                key,
                self.kms_data_encryption.map(|_| DataEncryption::Sm4),
            )),
        };
        match (problems.is_empty(), endpoint) {
            (true, Some(endpoint)) => Ok(DesiredState {
                bucket: self.bucket.clone(),
                region: self.region.clone(),
                endpoint,
                rule,
                signature_version: match self.signature_version {
                    SignatureVersionSpec::V4 => SignatureVersion::V4,
                    SignatureVersionSpec::V1 => SignatureVersion::V1,
                },
                resync_interval,
                allow_downgrade: self.allow_downgrade,
                object_audit,
            }),
            _ => Err(InvalidSpec(problems)),
        }
    }
}

/// `spec.resyncInterval` checked: absent or empty is `None`; otherwise a duration from 30s to
/// 24h, or the problem (naming the field) when it is not one.
pub fn resync_interval(value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(text) = value.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let shown: String = text.chars().take(32).collect();
    match parse_duration(text) {
        Some(d) if (MIN_RESYNC..=MAX_RESYNC).contains(&d) => Ok(Some(d)),
        Some(d) if d < MIN_RESYNC => Err(format!(
            "spec.resyncInterval: {shown} is shorter than the minimum of 30s"
        )),
        Some(_) => Err(format!(
            "spec.resyncInterval: {shown} is longer than the maximum of 24h"
        )),
        None => Err(format!(
            "spec.resyncInterval: {shown:?} is not a duration such as 90s, 5m or 1h30m"
        )),
    }
}

/// Parses Go-style durations (`90s`, `5m`, `1h30m`, `1.5h`, `500ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, seconds) = [("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]
            .into_iter()
            .find(|(unit, _)| rest.starts_with(unit))?;
        total += value * seconds;
        rest = &rest[unit.len()..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The CRD as YAML, exactly what `crds/bucketencryption.yaml` holds.
pub fn crd_yaml() -> String {
    let crd = BucketEncryption::crd();
    let yaml = serde_saphyr::to_string(&crd).expect("the CRD serialises");
    format!("# Generated by `oss-encryption-operator crd`; do not edit.\n{yaml}")
}

/// The resource reference as a Markdown table (field, type, default, description), generated
/// from the CRD schema; README.md holds this output between markers and a test keeps them equal.
pub fn reference_markdown() -> String {
    fn walk(schema: &serde_json::Value, path: &str, required: &[String], rows: &mut Vec<String>) {
        let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
            return;
        };
        for (name, child) in properties {
            let field = format!("{path}{name}");
            let mut kind = child["type"].as_str().unwrap_or("object").to_owned();
            if let Some(values) = child["enum"].as_array() {
                let values: Vec<String> = values
                    .iter()
                    .filter_map(|v| v.as_str())
                    .map(|v| format!("`{v}`"))
                    .collect();
                kind = values.join(" \\| ");
            }
            let default = match &child["default"] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) if s.is_empty() => String::new(),
                serde_json::Value::String(s) => format!("`{s}`"),
                other => format!("`{other}`"),
            };
            let mut description = child["description"].as_str().unwrap_or("").replace('\n', " ");
            if required.iter().any(|r| r == name) {
                description = format!("**Required.** {description}");
            }
            rows.push(format!("| `{field}` | {kind} | {default} | {description} |"));
            let required: Vec<String> = child["required"]
                .as_array()
                .map(|r| r.iter().filter_map(|v| v.as_str()).map(str::to_owned).collect())
                .unwrap_or_default();
            let nested = if child["type"] == "array" {
                &child["items"]
            } else {
                child
            };
            let suffix = if child["type"] == "array" { "[]." } else { "." };
            walk(nested, &format!("{field}{suffix}"), &required, rows);
        }
    }
    let crd = serde_json::to_value(BucketEncryption::crd()).expect("the CRD serialises");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut rows = vec![
        "| Field | Type | Default | Description |".to_owned(),
        "|---|---|---|---|".to_owned(),
    ];
    for part in ["spec", "status"] {
        let schema = &root[part];
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str()).map(str::to_owned).collect())
            .unwrap_or_default();
        walk(schema, &format!("{part}."), &required, &mut rows);
    }
    rows.join("\n") + "\n"
}

pub mod grant;
pub mod object_audit;
pub mod policy;

pub use object_audit::{ObjectAudit, ObjectAuditSpec, ObjectAuditStatus};

#[cfg(test)]
mod tests;
