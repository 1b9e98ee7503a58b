//! The `BucketEncryptionPolicy` API (cluster-scoped, `oss.encryption.dev/v1alpha1`): one rule for
//! every bucket of the account that a selector picks, audited (Observe, the default) or enforced
//! (Manage). Types, the controller-side validation, and CRD generation. No I/O here.

use std::time::Duration;

use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Algorithm, Condition, CredentialsSource, KmsDataEncryption, ManagementPolicy, SignatureVersionSpec,
};
use crate::oss::endpoint::{self, Endpoint};
use crate::oss::{DataEncryption, EncryptionRule, SignatureVersion, SseAlgorithm};

/// The most non-compliant buckets the status lists by name.
pub const NON_COMPLIANT_LISTED: usize = 50;

/// One encryption rule for every bucket of the account that the selector picks.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oss.encryption.dev",
    version = "v1alpha1",
    kind = "BucketEncryptionPolicy",
    plural = "bucketencryptionpolicies",
    singular = "bucketencryptionpolicy",
    status = "BucketEncryptionPolicyStatus",
    shortname = "bkencpol",
    category = "oss",
    doc = "Holds every OSS bucket of the account that the selector picks to one default encryption rule: reports compliance (Observe) or enforces it (Manage).",
    printcolumn = r#"{"name":"Selected","type":"integer","jsonPath":".status.buckets.selected"}"#,
    printcolumn = r#"{"name":"Compliant","type":"integer","jsonPath":".status.buckets.compliant"}"#,
    printcolumn = r#"{"name":"NonCompliant","type":"integer","jsonPath":".status.buckets.nonCompliant"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.managementPolicy"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BucketEncryptionPolicySpec {
    /// Which buckets of the account the policy covers.
    #[serde(default)]
    pub selector: BucketSelector,

    /// The rule a selected bucket must have (and, in Manage mode, is given).
    pub rule: PolicyRule,

    /// Other rules that also count as compliant and are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub accept: Vec<PolicyRule>,

    /// Observe (the default) only reports; Manage writes the rule to non-compliant buckets,
    /// never a weaker rule than a bucket has, and only after the KMS key pre-flight.
    #[serde(default = "observe")]
    pub management_policy: ManagementPolicy,

    /// A Secret in the operator's own namespace with accessKeyId, accessKeySecret and optionally
    /// securityToken. Absent means the operator's own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsSource>,

    /// How often the account is listed and the selected buckets re-read, from 30s to 24h.
    /// Absent means the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    #[x_kube(validation = kube::core::Rule::new(
        "duration(self) >= duration('30s') && duration(self) <= duration('24h')"
    ).message("resyncInterval must be between 30s and 24h"))]
    pub resync_interval: Option<String>,

    /// Endpoint override for every call (host or https URL; must pass the operator's endpoint
    /// allow-list). Empty means each region's public endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub endpoint: Option<String>,

    /// Request signature version: V4 (default) or V1.
    #[serde(default)]
    pub signature_version: SignatureVersionSpec,
}

fn observe() -> ManagementPolicy {
    ManagementPolicy::Observe
}

/// Which buckets a policy covers: all of them that match every set field.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BucketSelector {
    /// Only buckets in these regions (empty: every region).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub regions: Vec<String>,
    /// Only bucket names starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub name_prefix: Option<String>,
    /// Only bucket names matching this regular expression (Rust regex syntax, linear time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub name_pattern: Option<String>,
    /// Bucket names left out although they match (reported as excluded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub exclude: Vec<String>,
}

/// A rule, as in a BucketEncryption spec.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "self.algorithm == 'KMS' || !has(self.kmsMasterKeyId) || self.kmsMasterKeyId == ''"
).message("kmsMasterKeyId is only allowed with algorithm KMS"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.algorithm == 'KMS' || !has(self.kmsDataEncryption)"
).message("kmsDataEncryption is only allowed with algorithm KMS"))]
pub struct PolicyRule {
    /// None, AES256, KMS or SM4.
    pub algorithm: Algorithm,
    /// CMK id, only with KMS (empty: the OSS-managed key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub kms_master_key_id: Option<String>,
    /// SM4, only with KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_data_encryption: Option<KmsDataEncryption>,
}

impl PolicyRule {
    /// The rule this spec means (`None` = no rule), or what is wrong with it.
    pub fn to_rule(&self, field: &str) -> Result<Option<EncryptionRule>, String> {
        let key = self
            .kms_master_key_id
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if self.algorithm != Algorithm::Kms && (key.is_some() || self.kms_data_encryption.is_some()) {
            return Err(format!(
                "{field}: kmsMasterKeyId and kmsDataEncryption are only allowed with algorithm KMS"
            ));
        }
        Ok(match self.algorithm {
            Algorithm::None => None,
            Algorithm::Aes256 => Some(EncryptionRule::new(SseAlgorithm::Aes256)),
            Algorithm::Sm4 => Some(EncryptionRule::new(SseAlgorithm::Sm4)),
            Algorithm::Kms => Some(EncryptionRule::kms(
                key,
                self.kms_data_encryption.map(|_| DataEncryption::Sm4),
            )),
        })
    }
}

/// What the policy last found.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BucketEncryptionPolicyStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (every selected bucket compliant) and Synced (the last pass completed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// How many buckets fall in each class.
    #[serde(default)]
    pub buckets: BucketCounts,
    /// Non-compliant buckets, sorted by name, at most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_compliant: Vec<NonCompliantBucket>,
    /// Selected buckets a BucketEncryption owns (which exempts them from the policy), sorted by
    /// bucket name, at most 50: who opted which bucket out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_by_resource: Vec<ManagedByResource>,
    /// When the account was last listed by a pass that changed the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
}

/// Buckets per class. `selected` = compliant + nonCompliant + managedByResource + claimedByPolicy + errors.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BucketCounts {
    pub selected: i64,
    pub compliant: i64,
    pub non_compliant: i64,
    /// Owned by a BucketEncryption (which wins over any policy).
    pub managed_by_resource: i64,
    /// Selected by an older policy too (which wins).
    pub claimed_by_policy: i64,
    /// Matched the selector but named in `exclude`.
    pub excluded: i64,
    /// Their rule could not be read (or, in Manage mode, written).
    pub errors: i64,
}

/// A bucket that does not comply.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NonCompliantBucket {
    pub bucket: String,
    pub region: String,
    /// The rule it has (None, AES256, KMS (...), SM4).
    pub observed: String,
}

/// A selected bucket a BucketEncryption owns.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedByResource {
    pub bucket: String,
    /// The owning BucketEncryption, `namespace/name`.
    pub resource: String,
}

/// A policy's spec, checked and compiled.
#[derive(Clone, Debug)]
pub struct PolicyDesired {
    pub regions: Vec<String>,
    pub name_prefix: String,
    pub name_pattern: Option<regex::Regex>,
    pub exclude: Vec<String>,
    pub rule: Option<EncryptionRule>,
    pub accept: Vec<Option<EncryptionRule>>,
    pub endpoint: Option<Endpoint>,
    pub signature_version: SignatureVersion,
    pub resync_interval: Option<Duration>,
}

impl BucketEncryptionPolicySpec {
    /// The controller's own validation: every problem, named (the pattern compiled here).
    pub fn validate(&self) -> Result<PolicyDesired, super::InvalidSpec> {
        let mut problems = Vec::new();
        for region in &self.selector.regions {
            if let Err(e) = endpoint::validate_region(region) {
                problems.push(format!("spec.selector.regions: {e}"));
            }
        }
        let name_pattern = match self.selector.name_pattern.as_deref().filter(|p| !p.is_empty()) {
            None => None,
            Some(pattern) => match regex::RegexBuilder::new(pattern).size_limit(1 << 20).build() {
                Ok(compiled) => Some(compiled),
                Err(e) => {
                    problems.push(format!(
                        "spec.selector.namePattern: {}",
                        e.to_string().lines().last().unwrap_or("invalid")
                    ));
                    None
                }
            },
        };
        let rule = self
            .rule
            .to_rule("spec.rule")
            .map_err(|e| problems.push(e))
            .unwrap_or(None);
        let accept: Vec<Option<EncryptionRule>> = self
            .accept
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.to_rule(&format!("spec.accept[{i}]"))
                    .map_err(|e| problems.push(e))
                    .ok()
            })
            .collect();
        let endpoint = match self.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            None => None,
            Some(value) => Endpoint::parse(value)
                .map_err(|e| problems.push(format!("spec.endpoint: {e}")))
                .ok(),
        };
        let resync_interval = super::resync_interval(self.resync_interval.as_deref())
            .map_err(|problem| problems.push(problem))
            .unwrap_or(None);
        if let Some(secret) = &self.credentials
            && secret.secret_ref.name.trim().is_empty()
        {
            problems.push("spec.credentials.secretRef.name: must not be empty".into());
        }
        if !problems.is_empty() {
            return Err(super::InvalidSpec(problems));
        }
        Ok(PolicyDesired {
            regions: self.selector.regions.clone(),
            name_prefix: self.selector.name_prefix.clone().unwrap_or_default(),
            name_pattern,
            exclude: self.selector.exclude.clone(),
            rule,
            accept,
            endpoint,
            signature_version: match self.signature_version {
                SignatureVersionSpec::V4 => SignatureVersion::V4,
                SignatureVersionSpec::V1 => SignatureVersion::V1,
            },
            resync_interval,
        })
    }
}

/// The policy CRD as YAML, exactly what `crds/bucketencryptionpolicy.yaml` holds.
pub fn crd_yaml() -> String {
    let crd = <BucketEncryptionPolicy as kube::CustomResourceExt>::crd();
    let yaml = serde_saphyr::to_string(&crd).expect("the CRD serialises");
    format!("# Generated by `oss-encryption-operator crd --policy`; do not edit.\n{yaml}")
}
