//! `plan` and `apply` without a cluster: the controller's validation, the same pure plan and the
//! same OSS client, over manifest files. Every resource becomes one result row.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use futures_util::StreamExt;

use serde::Serialize;

use crate::api::{BucketEncryption, ManagementPolicy};
use crate::kms::{KeyChecker, Verdict};
pub use crate::manifest::Manifests;
use crate::oss::{BucketTarget, Credentials, CredentialsProvider, Endpoint, OssClient};
use crate::reconcile::ownership::{Claim, owner_of};
use crate::reconcile::plan::{self, Action, Downgrades};
use crate::reconcile::preflight;

/// Plan only reads; apply also writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// What the CLI talks to.
#[derive(Clone, Debug)]
pub struct Engine {
    pub client: OssClient,
    /// Credentials for resources whose Secret is not among the manifests (file, environment or RRSA).
    pub default_credentials: Option<CredentialsProvider>,
    /// Why the environment's credentials were refused (set but incomplete or invalid), when
    /// they were: rows needing them say so instead of "no credentials".
    pub credentials_refused: Option<String>,
    /// Send every resource here instead of its own endpoint (`--endpoint`, `--emulator`).
    pub endpoint_override: Option<Endpoint>,
    /// Ignore the manifests' Secrets and use `default_credentials` for everything (`--emulator`).
    pub ignore_secrets: bool,
    /// The KMS key pre-flight; `None` with `--kms-preflight=false`.
    pub key_checker: Option<KeyChecker>,
    /// `--allow-downgrade`: as if every manifest set `allowDowngrade: true`.
    pub allow_downgrade: bool,
}

/// One resource's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// File and document.
    pub source: String,
    /// namespace/name.
    pub resource: String,
    pub bucket: String,
    /// The rule OSS holds (`-` when it could not be read).
    pub current: String,
    /// The rule the manifest wants.
    pub desired: String,
    /// none, put, delete, report-only (Observe), `blocked (downgrade)`, `blocked (key)`, or error.
    pub action: String,
    /// The KMS key pre-flight: `-` (no CMK to check, or switched off), `usable`, `not usable`,
    /// `check failed`.
    pub key_check: String,
    /// What happened (or would happen).
    pub result: String,
    /// The last OSS request id for this resource.
    pub request_id: String,
}

impl Row {
    /// A put or delete planned (plan) or made (apply).
    pub fn is_change(&self) -> bool {
        self.action == "put" || self.action == "delete"
    }

    pub fn is_error(&self) -> bool {
        self.action == "error"
    }

    /// Held back by a safety net: a downgrade without permission, or a key OSS cannot use
    /// (including an in-sync bucket whose key went bad: its uploads will fail).
    pub fn is_blocked(&self) -> bool {
        self.action.starts_with("blocked") || self.key_check == NOT_USABLE
    }
}

const NOT_USABLE: &str = "not usable";

/// All rows and their totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Puts and deletes planned (plan) or made (apply); Observe-mode drift is reported, not counted.
    pub changes: usize,
    pub errors: usize,
    /// Rows held back by the downgrade guard or the key pre-flight (they fail the run).
    pub blocked: usize,
}

pub(super) fn name_of(resource: &BucketEncryption) -> String {
    format!(
        "{}/{}",
        resource.metadata.namespace.as_deref().unwrap_or("default"),
        resource.metadata.name.as_deref().unwrap_or("")
    )
}

/// Plans or applies every resource (16 at a time); bad documents and failures become error rows,
/// the rest go on. See [`run_streaming`].
pub async fn run(mode: Mode, manifests: &Manifests, engine: &Engine) -> Report {
    run_streaming(mode, manifests, engine, 16, |_| ControlFlow::Continue(())).await
}

/// Plans or applies every resource, `concurrency` at a time. Rows come out in manifest order:
/// `on_row` sees each one as soon as it and every row before it are done, and may stop the run
/// (for example when stdout was closed); the report holds the rows seen.
pub async fn run_streaming(
    mode: Mode,
    manifests: &Manifests,
    engine: &Engine,
    concurrency: usize,
    mut on_row: impl FnMut(&Row) -> ControlFlow<()>,
) -> Report {
    let mut report = Report::default();
    // Records a row and tells the caller; `true` when the caller wants the run to stop.
    let mut emit = |report: &mut Report, row: Row| -> bool {
        report.changes += usize::from(row.is_change());
        report.errors += usize::from(row.is_error());
        report.blocked += usize::from(row.is_blocked());
        let stop = on_row(&row).is_break();
        report.rows.push(row);
        stop
    };
    for error in &manifests.errors {
        let row = Row {
            source: error.origin.to_string(),
            resource: "-".into(),
            bucket: "-".into(),
            current: "-".into(),
            desired: "-".into(),
            action: "error".into(),
            key_check: "-".into(),
            result: error.message.clone(),
            request_id: String::new(),
        };
        if emit(&mut report, row) {
            return report;
        }
    }
    let verdicts = ownership_verdicts(manifests);
    let jobs = manifests
        .resources
        .iter()
        .zip(verdicts)
        .map(|((source, resource), verdict)| async move {
            let mut row = Row {
                source: source.to_string(),
                resource: name_of(resource),
                bucket: resource.spec.bucket.clone(),
                current: "-".into(),
                desired: "-".into(),
                action: "error".into(),
                key_check: "-".into(),
                result: String::new(),
                request_id: String::new(),
            };
            if let Err(message) = one(mode, manifests, engine, resource, verdict, &mut row).await {
                row.action = "error".into();
                row.result = message;
            }
            row
        });
    // Up to `concurrency` jobs running at once (finished rows waiting their turn hold no slot),
    // rows yielded in manifest order.
    let mut rows = std::pin::pin!(super::ordered::in_order(jobs, concurrency));
    while let Some(row) = rows.next().await {
        if emit(&mut report, row) {
            break;
        }
    }
    report
}

/// One bucket, one owner, decided as the controller decides it (bucket name alone; manifests
/// have no age, so the owner is the first by namespace, then name), and a resource declared
/// twice runs once. Decided up front in manifest order, so concurrency changes nothing.
fn ownership_verdicts(manifests: &Manifests) -> Vec<Result<(), String>> {
    let valid: Vec<bool> = manifests
        .resources
        .iter()
        .map(|(_, r)| r.spec.validate().is_ok())
        .collect();
    // Claims grouped by bucket, so each owner is decided once (not a scan per resource).
    let mut claims: HashMap<&str, Vec<Claim>> = HashMap::new();
    for ((_, r), _) in manifests.resources.iter().zip(&valid).filter(|(_, ok)| **ok) {
        claims.entry(r.spec.bucket.as_str()).or_default().push(Claim {
            bucket: r.spec.bucket.clone(),
            created: None,
            namespace: r.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: r.metadata.name.clone().unwrap_or_default(),
        });
    }
    let owners: HashMap<&str, String> = claims
        .iter()
        .filter_map(|(bucket, group)| Some((*bucket, owner_of(bucket, group)?.resource())))
        .collect();
    let mut claimed: HashSet<&str> = HashSet::new();
    manifests
        .resources
        .iter()
        .zip(valid)
        .map(|((_, resource), valid)| {
            if !valid {
                return Ok(()); // reported by validation itself
            }
            let bucket = resource.spec.bucket.as_str();
            let me = name_of(resource);
            if let Some(owner) = owners.get(bucket)
                && *owner != me
            {
                return Err(format!(
                    "conflict: bucket {bucket} is also declared by {owner}, which manages it; skipped"
                ));
            }
            if !claimed.insert(bucket) {
                return Err(format!(
                    "conflict: {me} declares bucket {bucket} more than once; skipped"
                ));
            }
            Ok(())
        })
        .collect()
}

/// One resource, filling in its row.
async fn one(
    mode: Mode,
    manifests: &Manifests,
    engine: &Engine,
    resource: &BucketEncryption,
    ownership: Result<(), String>,
    row: &mut Row,
) -> Result<(), String> {
    let mut desired = resource.spec.validate().map_err(|e| e.to_string())?;
    row.desired = crate::oss::describe_rule(desired.rule.as_ref());
    if let Some(endpoint) = &engine.endpoint_override {
        desired.endpoint = endpoint.clone();
    }
    ownership?;
    engine
        .client
        .config()
        .allow_list
        .check(&desired.endpoint)
        .map_err(|e| e.to_string())?;
    let credentials = credentials(manifests, engine, resource)?;
    let target = BucketTarget {
        bucket: desired.bucket.clone(),
        region: desired.region.clone(),
        endpoint: desired.endpoint.clone(),
        signature_version: desired.signature_version,
    };

    // The key check most likely needed runs alongside the read, not queued behind it.
    let likely = preflight::likely_key(desired.rule.as_ref(), resource.spec.management_policy);
    let early_check = async {
        match (&engine.key_checker, likely) {
            (Some(checker), Some(key)) => Some(checker.check(&desired.region, key, &credentials).await),
            _ => None,
        }
    };
    let (observed, early) = tokio::join!(engine.client.get_encryption(&target, &credentials), early_check);
    let observed = observed.map_err(|e| e.to_string())?;
    row.current = crate::oss::describe_rule(observed.value.as_ref());
    row.request_id = observed.request_id.clone();
    let downgrades = Downgrades::allowed(resource.spec.allow_downgrade || engine.allow_downgrade);
    let decision = plan::plan(
        desired.rule.as_ref(),
        observed.value.as_ref(),
        resource.spec.management_policy,
        downgrades,
    );
    let key = preflight::key_to_check(&decision.action, observed.value.as_ref());
    let verdict = match (&engine.key_checker, key) {
        (Some(_), Some(key)) if Some(key) == likely => early,
        (Some(checker), Some(key)) => Some(checker.check(&desired.region, key, &credentials).await),
        _ => None,
    };
    row.key_check = match &verdict {
        None => "-",
        Some(Verdict::Usable { .. }) => "usable",
        Some(Verdict::NotUsable { .. }) => NOT_USABLE,
        Some(Verdict::CheckFailed(_)) => "check failed",
    }
    .into();
    if let Some(verdict @ Verdict::CheckFailed(_)) = &verdict {
        return Err(format!("{}; nothing written", verdict.describe()));
    }
    let bad_key = verdict.filter(|v| !v.is_usable()).map(|v| v.describe());
    let Some(drift) = decision.drift else {
        row.action = "none".into();
        row.result = match bad_key {
            Some(problem) => format!("in sync, but {problem}"),
            None => "no change".into(),
        };
        return Ok(());
    };
    match (&decision.action, mode) {
        (Action::Nothing, _) => {
            debug_assert_eq!(resource.spec.management_policy, ManagementPolicy::Observe);
            row.action = "report-only".into();
            row.result = format!("{drift} (Observe: not changed)");
            if let Some(problem) = bad_key {
                row.result.push_str(&format!("; {problem}"));
            }
        }
        (Action::Blocked, _) => {
            row.action = "blocked (downgrade)".into();
            row.result = format!(
                "{drift}: that weakens the bucket's encryption (None < AES256 = SM4 < KMS); not written \
                 (set allowDowngrade: true or pass --allow-downgrade)"
            );
        }
        (Action::Put(_), _) if bad_key.is_some() => {
            row.action = "blocked (key)".into();
            row.result = format!("{}; not written", bad_key.unwrap_or_default());
        }
        (Action::Put(_), Mode::Plan) => {
            row.action = "put".into();
            row.result = "would put".into();
        }
        (Action::Delete, Mode::Plan) => {
            row.action = "delete".into();
            row.result = "would delete".into();
        }
        (Action::Put(rule), Mode::Apply) => {
            row.action = "put".into();
            let reply = engine
                .client
                .put_encryption(&target, &credentials, rule)
                .await
                .map_err(|e| e.to_string())?;
            row.request_id = reply.request_id;
            row.result = "applied".into();
        }
        (Action::Delete, Mode::Apply) => {
            row.action = "delete".into();
            let reply = engine
                .client
                .delete_encryption(&target, &credentials)
                .await
                .map_err(|e| e.to_string())?;
            row.request_id = reply.request_id;
            row.result = "deleted".into();
        }
    }
    Ok(())
}

/// The Secret among the manifests that the resource names, else the default credentials.
fn credentials(
    manifests: &Manifests,
    engine: &Engine,
    resource: &BucketEncryption,
) -> Result<CredentialsProvider, String> {
    let named = resource
        .spec
        .credentials
        .as_ref()
        .filter(|_| !engine.ignore_secrets);
    if let Some(source) = named {
        let namespace = resource.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(secret) = manifests.secret(namespace, &source.secret_ref.name) {
            let credentials = Credentials::from_fields(|key| secret.data.get(key).cloned())
                .map_err(|missing| format!("Secret {namespace}/{} has {missing}", source.secret_ref.name))?;
            return Ok(CredentialsProvider::Static(credentials));
        }
    }
    if let (None, Some(reason)) = (&engine.default_credentials, &engine.credentials_refused) {
        return Err(format!("credentials from the environment refused: {reason}"));
    }
    engine.default_credentials.clone().ok_or_else(|| {
        "no credentials: put the named Secret among the manifests, or pass --credentials-file, or set \
         ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (or the RRSA variables)"
            .to_owned()
    })
}

/// `--emulator`: an in-process OSS emulator holding every bucket the manifests name (empty) and
/// every KMS key they name (Enabled, in the bucket's region), a fresh access key, and an engine
/// pointed at it (its address allowed, Secrets ignored; KMS calls go to it too).
pub async fn emulated(
    manifests: &Manifests,
    mut config: crate::oss::ClientConfig,
    kms: &crate::cli::args::KmsArgs,
) -> Result<(crate::emulator::Emulator, Engine), Box<dyn std::error::Error>> {
    let access_key_id = format!("LTAI5tEmulator{:08x}", fastrand::u32(..));
    let secret = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let buckets = manifests
        .resources
        .iter()
        .filter(|(_, r)| {
            crate::oss::endpoint::validate_bucket_name(&r.spec.bucket).is_ok()
                && crate::oss::endpoint::validate_region(&r.spec.region).is_ok()
        })
        .map(|(_, r)| (r.spec.bucket.clone(), r.spec.region.clone()))
        .collect();
    let emulator = crate::emulator::Emulator::start(crate::emulator::EmulatorConfig {
        access_keys: vec![(access_key_id.clone(), secret.clone())],
        buckets,
        kms_keys: emulated_keys(manifests),
        ..crate::emulator::EmulatorConfig::default()
    })
    .await?;
    config.allow_list.allow(emulator.endpoint().authority());
    let kms = crate::cli::args::KmsArgs {
        kms_endpoint: Some(emulator.url()),
        ..kms.clone()
    };
    let engine = Engine {
        key_checker: kms.checker(config.allow_list.clone(), None)?,
        client: OssClient::new(config)?,
        default_credentials: Some(Credentials::new(access_key_id, secret).into()),
        credentials_refused: None,
        endpoint_override: Some(emulator.endpoint()),
        ignore_secrets: true,
        allow_downgrade: false,
    };
    Ok((emulator, engine))
}

/// A usable key for every CMK the manifests name: by id, or an id made up for an alias; in the
/// region of the bucket that names it (an ARN's own region wins).
fn emulated_keys(manifests: &Manifests) -> Vec<(String, crate::emulator::KmsKey)> {
    let mut keys: Vec<(String, crate::emulator::KmsKey)> = Vec::new();
    for (_, resource) in &manifests.resources {
        let Some(name) = resource.spec.kms_master_key_id.as_deref().map(str::trim) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let mut key = crate::emulator::KmsKey {
            region: resource.spec.region.clone(),
            ..crate::emulator::KmsKey::default()
        };
        let id = if let Some(arn) = name.strip_prefix("acs:kms:") {
            let mut parts = arn.splitn(3, ':');
            key.region = parts.next().unwrap_or_default().to_owned();
            key.account = parts.next().unwrap_or_default().to_owned();
            let rest = parts.next().unwrap_or_default();
            rest.strip_prefix("key/").unwrap_or(rest).to_owned()
        } else if name.starts_with("alias/") {
            key.aliases.push(name.to_owned());
            format!("key-emulated-{}", keys.len() + 1)
        } else {
            name.to_owned()
        };
        if !keys
            .iter()
            .any(|(existing, k)| *existing == id || k.aliases.iter().any(|a| a == name))
        {
            keys.push((id, key));
        }
    }
    keys
}
