//! `plan` and `apply` without a cluster: the controller's validation, the same pure plan and the
//! same OSS client, over manifest files. Every resource becomes one result row.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::api::{BucketEncryption, ManagementPolicy};
use crate::manifest::Manifests;
use crate::oss::{BucketTarget, Credentials, CredentialsProvider, EncryptionRule, Endpoint, OssClient};
use crate::reconcile::ownership::{Claim, owner_of};
use crate::reconcile::plan::{self, Action};

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
    /// Send every resource here instead of its own endpoint (`--endpoint`, `--emulator`).
    pub endpoint_override: Option<Endpoint>,
    /// Ignore the manifests' Secrets and use `default_credentials` for everything (`--emulator`).
    pub ignore_secrets: bool,
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
    /// none, put, delete, report-only (Observe), or error.
    pub action: String,
    /// What happened (or would happen).
    pub result: String,
    /// The last OSS request id for this resource.
    pub request_id: String,
}

/// All rows and their totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Puts and deletes planned (plan) or made (apply); Observe-mode drift is reported, not counted.
    pub changes: usize,
    pub errors: usize,
}

fn describe(rule: Option<&EncryptionRule>) -> String {
    rule.map_or_else(|| "None".to_owned(), ToString::to_string)
}

fn name_of(resource: &BucketEncryption) -> String {
    format!(
        "{}/{}",
        resource.metadata.namespace.as_deref().unwrap_or("default"),
        resource.metadata.name.as_deref().unwrap_or("")
    )
}

/// Plans or applies every resource; bad documents and failures become error rows, the rest go on.
pub async fn run(mode: Mode, manifests: &Manifests, engine: &Engine) -> Report {
    let mut report = Report::default();
    for error in &manifests.errors {
        report.rows.push(Row {
            source: error.origin.to_string(),
            resource: "-".into(),
            bucket: "-".into(),
            current: "-".into(),
            desired: "-".into(),
            action: "error".into(),
            result: error.message.clone(),
            request_id: String::new(),
        });
    }
    // One bucket, one owner, decided as the controller decides it (bucket name alone; manifests
    // have no age, so the owner is the first by namespace, then name).
    let claims: Vec<Claim> = manifests
        .resources
        .iter()
        .filter(|(_, r)| r.spec.validate().is_ok())
        .map(|(_, r)| Claim {
            bucket: r.spec.bucket.clone(),
            created: None,
            namespace: r.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: r.metadata.name.clone().unwrap_or_default(),
        })
        .collect();
    let mut claimed: HashSet<String> = HashSet::new();
    for (source, resource) in &manifests.resources {
        let mut row = Row {
            source: source.to_string(),
            resource: name_of(resource),
            bucket: resource.spec.bucket.clone(),
            current: "-".into(),
            desired: "-".into(),
            action: "error".into(),
            result: String::new(),
            request_id: String::new(),
        };
        let ownership = Ownership {
            claims: &claims,
            claimed: &mut claimed,
        };
        match one(mode, manifests, engine, resource, ownership, &mut row).await {
            Ok(()) => report.changes += usize::from(row.action == "put" || row.action == "delete"),
            Err(message) => {
                row.action = "error".into();
                row.result = message;
            }
        }
        report.rows.push(row);
    }
    report.errors = report.rows.iter().filter(|r| r.action == "error").count();
    report
}

/// Who owns which bucket, and which buckets were already handled in this run.
struct Ownership<'a> {
    claims: &'a [Claim],
    claimed: &'a mut HashSet<String>,
}

/// One resource, filling in its row.
async fn one(
    mode: Mode,
    manifests: &Manifests,
    engine: &Engine,
    resource: &BucketEncryption,
    ownership: Ownership<'_>,
    row: &mut Row,
) -> Result<(), String> {
    let mut desired = resource.spec.validate().map_err(|e| e.to_string())?;
    row.desired = describe(desired.rule.as_ref());
    if let Some(endpoint) = &engine.endpoint_override {
        desired.endpoint = endpoint.clone();
    }
    if let Some(owner) = owner_of(&desired.bucket, ownership.claims)
        && owner.resource() != row.resource
    {
        return Err(format!(
            "conflict: bucket {} is also declared by {}, which manages it; skipped",
            desired.bucket,
            owner.resource()
        ));
    }
    if !ownership.claimed.insert(desired.bucket.clone()) {
        return Err(format!(
            "conflict: {} declares bucket {} more than once; skipped",
            row.resource, desired.bucket
        ));
    }
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

    let observed = engine
        .client
        .get_encryption(&target, &credentials)
        .await
        .map_err(|e| e.to_string())?;
    row.current = describe(observed.value.as_ref());
    row.request_id = observed.request_id.clone();
    let decision = plan::plan(
        desired.rule.as_ref(),
        observed.value.as_ref(),
        resource.spec.management_policy,
    );
    let Some(drift) = decision.drift else {
        row.action = "none".into();
        row.result = "no change".into();
        return Ok(());
    };
    match (&decision.action, mode) {
        (Action::Nothing, _) => {
            debug_assert_eq!(resource.spec.management_policy, ManagementPolicy::Observe);
            row.action = "report-only".into();
            row.result = format!("{drift} (Observe: not changed)");
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
            let get = |key: &str| {
                secret
                    .data
                    .get(key)
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
            };
            let missing = |key: &str| format!("Secret {namespace}/{} has no {key}", source.secret_ref.name);
            let id = get("accessKeyId").ok_or_else(|| missing("accessKeyId"))?;
            let value = get("accessKeySecret").ok_or_else(|| missing("accessKeySecret"))?;
            let credentials =
                Credentials::new(id, value).with_security_token(get("securityToken").unwrap_or_default());
            return Ok(CredentialsProvider::Static(credentials));
        }
    }
    engine.default_credentials.clone().ok_or_else(|| {
        "no credentials: put the named Secret among the manifests, or pass --credentials-file, or set \
         ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (or the RRSA variables)"
            .to_owned()
    })
}

/// The report as a table.
pub fn table(report: &Report, mode: Mode) -> String {
    let headers = [
        "RESOURCE",
        "BUCKET",
        "CURRENT",
        "DESIRED",
        "ACTION",
        "RESULT",
        "REQUEST ID",
    ];
    let cells: Vec<[String; 7]> = report
        .rows
        .iter()
        .map(|r| {
            let resource = if r.resource == "-" {
                r.source.clone()
            } else {
                r.resource.clone()
            };
            [
                resource,
                r.bucket.clone(),
                r.current.clone(),
                r.desired.clone(),
                r.action.clone(),
                r.result.clone(),
                r.request_id.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (i, cell) in row.iter().enumerate().take(6) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 6 {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            } else {
                let _ = write!(text, "{cell}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&mut out, &headers.map(String::from));
    for row in &cells {
        line(&mut out, row);
    }
    let verb = match mode {
        Mode::Plan => "to change",
        Mode::Apply => "changed",
    };
    let _ = writeln!(
        out,
        "\n{} resource(s): {} {verb}, {} error(s)",
        report.rows.len(),
        report.changes,
        report.errors
    );
    out
}

/// `--emulator`: an in-process OSS emulator holding every bucket the manifests name (empty), a
/// fresh access key, and an engine pointed at it (its address allowed, Secrets ignored).
pub async fn emulated(
    manifests: &Manifests,
    mut config: crate::oss::ClientConfig,
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
        ..crate::emulator::EmulatorConfig::default()
    })
    .await?;
    config.allow_list.allow(emulator.endpoint().authority());
    let engine = Engine {
        client: OssClient::new(config)?,
        default_credentials: Some(Credentials::new(access_key_id, secret).into()),
        endpoint_override: Some(emulator.endpoint()),
        ignore_secrets: true,
    };
    Ok((emulator, engine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_and_sums_up() {
        let report = Report {
            rows: vec![Row {
                source: "a.yaml (document 1)".into(),
                resource: "platform/audit-logs".into(),
                bucket: "audit-logs-prod".into(),
                current: "None".into(),
                desired: "AES256".into(),
                action: "put".into(),
                result: "would put".into(),
                request_id: "RID".into(),
            }],
            changes: 1,
            errors: 0,
        };
        let text = table(&report, Mode::Plan);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RESOURCE"));
        assert_eq!(lines[0].find("BUCKET"), lines[1].find("audit-logs-prod"));
        assert!(text.ends_with("1 resource(s): 1 to change, 0 error(s)\n"));
    }
}
