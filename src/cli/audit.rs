//! `audit`: is the data encrypted as the rule says? (DESIGN 3.7) For each bucket (from manifests,
//! whose rule is the desired one, or the whole account, where the bucket's own rule is), list the
//! objects (ListObjectsV2, a page at a time) and read each examined object's encryption
//! (HeadObject): counts by kind and by CMK, objects below the rule (the downgrade guard's order)
//! with the oldest and newest of them, and with `--sample N` a uniform sample (reservoir
//! sampling over the listing: memory stays flat) with a 95% Wilson score interval for the share
//! below the rule. Read-only. One bucket's audit and its figures are [`crate::audit`] (shared
//! with the controller's `spec.objectAudit`); this file picks the buckets and prints.

use serde::Serialize;

use super::args::{AuditArgs, OutputFormat};
use crate::audit::{BucketAudit, Examine, Subject, audit_bucket};
use crate::oss::objects::EncryptionKind;
use crate::oss::{
    AllowList, BucketTarget, ClientConfig, Credentials, CredentialsProvider, Endpoint, OssClient,
    ServiceTarget, SignatureVersion,
};

/// Every bucket's audit.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub buckets: Vec<BucketAudit>,
    pub examined: u64,
    pub below_rule: u64,
    pub errors: u64,
}

impl AuditReport {
    /// 1 when any examined object is below the rule or anything could not be read, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.below_rule > 0 || self.errors > 0)
    }
}

/// The subjects the manifests name, or every problem with them (then nothing is audited).
pub fn subjects_from_manifests(
    manifests: &crate::manifest::Manifests,
    endpoint: Option<&Endpoint>,
    default_credentials: &Result<CredentialsProvider, String>,
) -> Result<Vec<Subject>, Vec<String>> {
    let mut problems: Vec<String> = manifests.errors.iter().map(ToString::to_string).collect();
    let mut subjects = Vec::new();
    for (source, resource) in &manifests.resources {
        let desired = match resource.spec.validate() {
            Ok(desired) => desired,
            Err(error) => {
                problems.push(format!("{source}: {error}"));
                continue;
            }
        };
        let named = resource.spec.credentials.as_ref().and_then(|c| {
            let namespace = resource.metadata.namespace.as_deref().unwrap_or("default");
            manifests
                .secret(namespace, &c.secret_ref.name)
                .map(|secret| (namespace, &c.secret_ref.name, secret))
        });
        let credentials = match named {
            Some((namespace, name, secret)) => Credentials::from_fields(|key| secret.data.get(key).cloned())
                .map(CredentialsProvider::Static)
                .map_err(|missing| format!("Secret {namespace}/{name} has {missing}")),
            None => default_credentials.clone(),
        };
        let credentials = match credentials {
            Ok(credentials) => credentials,
            Err(error) => {
                problems.push(format!("{source}: {error}"));
                continue;
            }
        };
        subjects.push(Subject {
            target: BucketTarget {
                bucket: desired.bucket.clone(),
                region: desired.region.clone(),
                endpoint: endpoint.cloned().unwrap_or(desired.endpoint),
                signature_version: desired.signature_version,
            },
            desired: Some(desired.rule),
            credentials,
        });
    }
    if subjects.is_empty() && problems.is_empty() {
        problems.push("the manifests hold no BucketEncryption".to_owned());
    }
    if problems.is_empty() {
        Ok(subjects)
    } else {
        Err(problems)
    }
}

/// The table: one row per bucket, then a summary line.
pub fn table(report: &AuditReport) -> String {
    let header = [
        "BUCKET",
        "RULE",
        "LISTED",
        "EXAMINED",
        "BELOW-RULE",
        "None",
        "AES256",
        "SM4",
        "KMS",
        "KMS+SM4",
        "BELOW-SHARE(95%)",
        "OLDEST-BELOW-RULE",
        "ERRORS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for b in &report.buckets {
        let kinds = EncryptionKind::ALL.iter().map(|k| {
            b.objects
                .by_encryption
                .get(k.as_str())
                .copied()
                .unwrap_or(0)
                .to_string()
        });
        let share = b.below_rule_share.as_ref().map_or("-".to_owned(), |s| {
            format!(
                "{:.1}% [{:.1}%, {:.1}%]",
                s.estimate * 100.0,
                s.low * 100.0,
                s.high * 100.0
            )
        });
        let oldest = b.objects.oldest_below_rule.as_ref().map_or("-".to_owned(), |d| {
            format!("{} ({})", crate::oss::list::printable(&d.key), d.last_modified)
        });
        let mut row = vec![
            b.bucket.clone(),
            b.rule.clone(),
            b.listed.to_string(),
            b.objects.examined.to_string(),
            b.objects.below_rule.to_string(),
        ];
        row.extend(kinds);
        row.extend([share, oldest, b.error_count.to_string()]);
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} bucket(s), {} object(s) examined, {} below the rule, {} error(s)\n",
        report.buckets.len(),
        report.examined,
        report.below_rule,
        report.errors
    ));
    for b in &report.buckets {
        for error in &b.errors {
            out.push_str(&format!("error: bucket {}: {error}\n", b.bucket));
        }
    }
    out
}

/// `audit`: exit code 0, or 1 when an examined object is below the rule, something could not
/// be read, or the input is bad (then no request is made).
pub async fn run(args: AuditArgs) -> Result<u8, Box<dyn std::error::Error>> {
    use std::io::IsTerminal;
    let endpoint = args.endpoint.as_deref().map(Endpoint::parse).transpose()?;
    for region in &args.regions {
        crate::oss::endpoint::validate_region(region).map_err(|e| format!("--region: {e}"))?;
    }
    let mut config = ClientConfig {
        allow_list: AllowList::new(&args.allowed_endpoint_suffixes),
        ..ClientConfig::default()
    };
    args.rate.apply_to(&mut config);
    let management = OssClient::new(config)?;
    let objects = management.data_plane(args.data_qps, args.data_burst);
    let default_credentials: Result<CredentialsProvider, String> = match &args.credentials_file {
        Some(path) => super::credentials_file(path).map(Into::into),
        None => CredentialsProvider::from_env(&management).map_err(|e| e.to_string()),
    };

    let subjects = if args.all_buckets {
        let credentials = default_credentials?;
        let list_region = args.regions.first().map_or("cn-hangzhou", String::as_str);
        let mut service = ServiceTarget::new(list_region)?;
        if let Some(endpoint) = &endpoint {
            service = service.with_endpoint(endpoint.clone());
        }
        let listed = management
            .list_all_buckets(&service, &credentials, &args.bucket_prefix)
            .await
            .map_err(|e| {
                format!(
                    "listing the account's buckets: {}",
                    crate::oss::list::printable(&e.to_string())
                )
            })?;
        let (buckets, refused) = super::import::screen(listed);
        for line in refused {
            eprint!("warning: {}", line.trim_start_matches("# "));
        }
        let mut subjects = Vec::new();
        for bucket in buckets {
            if !args.regions.is_empty() && !args.regions.contains(&bucket.region) {
                continue;
            }
            let mut target = BucketTarget::new(&bucket.name, &bucket.region)?;
            if let Some(endpoint) = &endpoint {
                target = target.with_endpoint(endpoint.clone());
            }
            subjects.push(Subject {
                target: target.with_signature_version(SignatureVersion::V4),
                desired: None,
                credentials: credentials.clone(),
            });
        }
        subjects
    } else {
        let manifests = crate::manifest::load(&args.paths, &args.namespace);
        for warning in &manifests.warnings {
            eprintln!("warning: {warning}");
        }
        match subjects_from_manifests(&manifests, endpoint.as_ref(), &default_credentials) {
            Ok(subjects) => subjects,
            Err(problems) => {
                for problem in problems {
                    eprintln!("error: {problem}");
                }
                eprintln!("error: nothing audited (fix the input above)");
                return Ok(1);
            }
        }
    };

    let examine = match args.sample {
        Some(size) => Examine::Sample(size),
        None => Examine::All,
    };
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |bucket: &str, listed: u64, examined: u64| {
        if terminal {
            eprint!("\r\x1b[K{bucket}: {listed} listed, {examined} examined");
        }
    };
    let mut report = AuditReport {
        buckets: Vec::new(),
        examined: 0,
        below_rule: 0,
        errors: 0,
    };
    for subject in &subjects {
        eprintln!(
            "auditing bucket {} ({})",
            subject.target.bucket, subject.target.region
        );
        let audit = audit_bucket(
            &management,
            &objects,
            subject,
            examine,
            &args.prefix,
            usize::from(args.concurrency),
            &mut progress,
        )
        .await;
        if terminal {
            eprint!("\r\x1b[K");
        }
        eprintln!(
            "bucket {}: {} listed, {} examined, {} below the rule ({}), {} error(s), {} requests",
            audit.bucket,
            audit.listed,
            audit.objects.examined,
            audit.objects.below_rule,
            audit.rule,
            audit.error_count,
            audit.requests.get_bucket_encryption + audit.requests.list_objects + audit.requests.head_object
        );
        report.examined += audit.objects.examined;
        report.below_rule += audit.objects.below_rule;
        report.errors += audit.error_count;
        report.buckets.push(audit);
    }
    match args.output {
        OutputFormat::Table => print!("{}", table(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_object_below_the_rule_or_any_error_exits_1() {
        let report = |below, errors| AuditReport {
            buckets: Vec::new(),
            examined: 10,
            below_rule: below,
            errors,
        };
        assert_eq!(report(0, 0).exit_code(), 0);
        assert_eq!(report(1, 0).exit_code(), 1);
        assert_eq!(report(0, 1).exit_code(), 1);
    }
}
