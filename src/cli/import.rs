//! `import`: the account into Git. Lists every bucket (ListBuckets, paged), reads each one's rule
//! concurrently through the client's adaptive limiter, and writes one BucketEncryption per bucket
//! that states the rule it has now: `plan` over the result reports no change. Decisions (names,
//! manifests, the kustomization) are pure functions; `run` does the listing, reading and writing.

use std::collections::HashSet;
use std::path::Path;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::args::ImportArgs;
use crate::oss::list::BucketSummary;
use crate::oss::{
    AllowList, BucketTarget, ClientConfig, CredentialsProvider, EncryptionRule, Endpoint, OssClient,
    ServiceTarget, SseAlgorithm,
};

/// One bucket's outcome: its rule (`None` = no rule), or why it could not be read.
pub type Observed = Result<Option<EncryptionRule>, String>;

/// A resource name for every bucket, in order: the bucket name when it is a valid DNS label
/// (OSS names always are), else a sanitised form; a name taken twice gets `-2`, `-3`, … in
/// the order given, so the same account always imports to the same names.
/// `kustomization` is never given out: its file would be `kustomization.yaml`.
pub fn resource_names(buckets: &[&str]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::from(["kustomization".to_owned()]);
    buckets
        .iter()
        .map(|bucket| {
            let base = dns_label(bucket);
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                let suffix = format!("-{n}");
                let keep = 63 - suffix.len();
                name = format!("{}{suffix}", base[..base.len().min(keep)].trim_end_matches('-'));
                n += 1;
            }
            name
        })
        .collect()
}

/// Lower-case letters, digits and `-`, starting and ending alphanumeric, at most 63 characters.
fn dns_label(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let trimmed: String = mapped.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_owned();
    if trimmed.is_empty() {
        "bucket".to_owned()
    } else {
        trimmed
    }
}

/// The BucketEncryption stating a bucket's current rule (`algorithm: None` without one):
/// Observe unless `manage`, always Retain (deleting the resource never touches the bucket).
pub fn manifest(
    name: &str,
    namespace: &str,
    bucket: &BucketSummary,
    rule: Option<&EncryptionRule>,
    manage: bool,
) -> Value {
    let mut spec = json!({
        "bucket": bucket.name,
        "region": bucket.region,
        "algorithm": match rule.map(|r| r.algorithm) {
            None => "None",
            Some(SseAlgorithm::Aes256) => "AES256",
            Some(SseAlgorithm::Sm4) => "SM4",
            Some(SseAlgorithm::Kms) => "KMS",
        },
    });
    if let Some(key) = rule.and_then(|r| r.kms_master_key_id.as_deref()) {
        spec["kmsMasterKeyId"] = json!(key);
    }
    if rule.is_some_and(|r| r.kms_data_encryption.is_some()) {
        spec["kmsDataEncryption"] = json!("SM4");
    }
    spec["managementPolicy"] = json!(if manage { "Manage" } else { "Observe" });
    spec["deletionPolicy"] = json!("Retain");
    json!({
        "apiVersion": "oss.encryption.dev/v1alpha1",
        "kind": "BucketEncryption",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// The listing as it may be imported, and why each other entry was refused: ListBuckets comes
/// from the endpoint, which may not be OSS, so a name that is not a valid OSS bucket name or a
/// region that is not a region id is refused (shown escaped, never as sent), and a name listed
/// twice is imported once.
pub fn screen(listed: Vec<BucketSummary>) -> (Vec<BucketSummary>, Vec<String>) {
    use crate::oss::endpoint::{validate_bucket_name, validate_region};
    use crate::oss::list::printable;
    let mut seen: HashSet<String> = HashSet::new();
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for bucket in listed {
        let name = printable(&bucket.name);
        let region = printable(&bucket.region);
        if validate_bucket_name(&bucket.name).is_err() {
            refused.push(format!("# NOT IMPORTED: bucket \"{name}\" is not a valid OSS bucket name (listed in region \"{region}\")\n"));
        } else if validate_region(&bucket.region).is_err() {
            refused.push(format!(
                "# NOT IMPORTED: bucket {name}: region \"{region}\" is not a valid OSS region id\n"
            ));
        } else if !seen.insert(bucket.name.clone()) {
            refused.push(format!(
                "# NOT IMPORTED: bucket {name} ({region}) listed more than once; imported once, as first listed\n"
            ));
        } else {
            kept.push(bucket);
        }
    }
    (kept, refused)
}

/// A manifest as a YAML document with a comment naming its source.
fn document(value: &Value, bucket: &BucketSummary) -> String {
    let yaml = serde_saphyr::to_string(value).expect("a manifest serialises");
    format!(
        "# Imported by oss-encryption-operator import: bucket {} ({}).\n{yaml}",
        bucket.name, bucket.region
    )
}

/// The comment standing for a bucket that could not be imported.
fn error_comment(bucket: &BucketSummary, error: &str) -> String {
    let error = crate::oss::list::printable(&error.replace('\n', " "));
    format!(
        "# NOT IMPORTED: bucket {} ({}): {error}\n",
        bucket.name, bucket.region
    )
}

/// `kustomization.yaml` listing the files; buckets that failed are named in comments on top.
pub fn kustomization(files: &[String], errors: &[String]) -> String {
    let mut text: String = errors.concat();
    text.push_str("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n");
    for file in files {
        text.push_str(&format!("  - {file}\n"));
    }
    text
}

/// `import`: exit code 0, or 1 when a bucket could not be read (it is named, not left out).
pub async fn run(args: ImportArgs) -> Result<u8, Box<dyn std::error::Error>> {
    for region in &args.regions {
        crate::oss::endpoint::validate_region(region).map_err(|e| format!("--region: {e}"))?;
    }
    let mut config = ClientConfig {
        allow_list: AllowList::new(&args.allowed_endpoint_suffixes),
        ..ClientConfig::default()
    };
    args.rate.apply_to(&mut config);
    let client = OssClient::new(config)?;
    let credentials: CredentialsProvider = match &args.credentials_file {
        Some(path) => super::credentials_file(path)?.into(),
        None => CredentialsProvider::from_env(&client)?,
    };
    let endpoint = args.endpoint.as_deref().map(Endpoint::parse).transpose()?;
    let list_region = args.regions.first().map_or("cn-hangzhou", String::as_str);
    let mut service = ServiceTarget::new(list_region)?;
    if let Some(endpoint) = &endpoint {
        service = service.with_endpoint(endpoint.clone());
    }
    let listed = client
        .list_all_buckets(&service, &credentials, &args.prefix)
        .await
        .map_err(|e| {
            format!(
                "listing the account's buckets: {}",
                crate::oss::list::printable(&e.to_string())
            )
        })?;
    let (buckets, refused) = screen(listed);
    let buckets: Vec<BucketSummary> = buckets
        .into_iter()
        .filter(|b| args.regions.is_empty() || args.regions.contains(&b.region))
        .collect();
    let observed: Vec<Observed> = super::ordered::in_order(
        buckets
            .iter()
            .map(|bucket| read_rule(&client, &credentials, bucket, endpoint.as_ref())),
        usize::from(args.concurrency),
    )
    .collect()
    .await;

    let names = resource_names(&buckets.iter().map(|b| b.name.as_str()).collect::<Vec<_>>());
    let mut documents = Vec::new();
    let mut errors = refused;
    for ((bucket, name), outcome) in buckets.iter().zip(&names).zip(&observed) {
        match outcome {
            Ok(rule) => documents.push((
                format!("{name}.yaml"),
                document(
                    &manifest(name, &args.namespace, bucket, rule.as_ref(), args.manage),
                    bucket,
                ),
            )),
            Err(error) => errors.push(error_comment(bucket, error)),
        }
    }
    for error in &errors {
        eprint!("error: {}", error.trim_start_matches("# "));
    }
    match &args.output_dir {
        None => {
            let mut out = errors.concat();
            for (_, text) in &documents {
                out.push_str("---\n");
                out.push_str(text);
            }
            print!("{out}");
        }
        Some(dir) => write_dir(dir, &documents, &errors)?,
    }
    eprintln!(
        "{} bucket(s) imported, {} could not be read",
        documents.len(),
        errors.len()
    );
    Ok(u8::from(!errors.is_empty()))
}

/// One bucket's rule, or the error that says why it could not be read.
async fn read_rule(
    client: &OssClient,
    credentials: &CredentialsProvider,
    bucket: &BucketSummary,
    endpoint: Option<&Endpoint>,
) -> Observed {
    let mut target = BucketTarget::new(&bucket.name, &bucket.region).map_err(|e| e.to_string())?;
    if let Some(endpoint) = endpoint {
        target = target.with_endpoint(endpoint.clone());
    }
    client
        .get_encryption(&target, credentials)
        .await
        .map(|reply| reply.value)
        .map_err(|e| e.to_string())
}

/// Writes every file, refusing up front (writing nothing) when one of them already exists.
fn write_dir(
    dir: &Path,
    documents: &[(String, String)],
    errors: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<String> = documents.iter().map(|(file, _)| file.clone()).collect();
    files.push("kustomization.yaml".into());
    // symlink_metadata: a dangling symlink exists too (`exists()` follows it and says no).
    let existing: Vec<&String> = files
        .iter()
        .filter(|f| std::fs::symlink_metadata(dir.join(f)).is_ok())
        .collect();
    if !existing.is_empty() {
        return Err(format!(
            "{} already holds {}; nothing written (import into an empty directory)",
            dir.display(),
            existing.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
        )
        .into());
    }
    for (file, text) in documents {
        create_new(&dir.join(file), text)?;
    }
    let listed: Vec<String> = documents.iter().map(|(file, _)| file.clone()).collect();
    create_new(&dir.join("kustomization.yaml"), &kustomization(&listed, errors))?;
    Ok(())
}

/// Writes a new file, never through a symlink or over a file that appeared since the check.
fn create_new(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}; import into an empty directory", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oss::DataEncryption;

    #[test]
    fn names_are_dns_labels_and_collisions_resolve_in_order() {
        assert_eq!(resource_names(&["audit-logs", "b1"]), ["audit-logs", "b1"]);
        assert_eq!(
            resource_names(&["Legacy_Bucket", "legacy-bucket", "legacy.bucket", "--"]),
            ["legacy-bucket", "legacy-bucket-2", "legacy-bucket-3", "bucket"]
        );
        let long = "a".repeat(70);
        let names = resource_names(&[&long, &long]);
        assert_eq!(names[0].len(), 63);
        assert_eq!(names[1].len(), 63);
        assert!(names[1].ends_with("-2"));
        for name in names {
            assert!(
                crate::oss::endpoint::validate_bucket_name(&name).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_manifest_states_the_rule_the_bucket_has() {
        let bucket = BucketSummary {
            name: "pay".into(),
            region: "cn-shanghai".into(),
            ..BucketSummary::default()
        };
        let rule = EncryptionRule::kms(Some("key-1"), Some(DataEncryption::Sm4));
        let value = manifest("pay", "platform", &bucket, Some(&rule), false);
        assert_eq!(value["spec"]["algorithm"], "KMS");
        assert_eq!(value["spec"]["kmsMasterKeyId"], "key-1");
        assert_eq!(value["spec"]["kmsDataEncryption"], "SM4");
        assert_eq!(value["spec"]["managementPolicy"], "Observe");
        assert_eq!(value["spec"]["deletionPolicy"], "Retain");
        assert_eq!(value["metadata"]["namespace"], "platform");
        let none = manifest("pay", "ns", &bucket, None, true);
        assert_eq!(none["spec"]["algorithm"], "None");
        assert_eq!(none["spec"]["managementPolicy"], "Manage");
        assert!(none["spec"].get("kmsMasterKeyId").is_none());
        let resource: crate::api::BucketEncryption = serde_json::from_value(value).unwrap();
        let desired = resource.spec.validate().unwrap();
        assert_eq!(
            desired.rule,
            Some(rule),
            "the manifest validates to the rule read"
        );
    }

    #[test]
    fn the_listing_is_screened_for_bad_names_regions_and_duplicates() {
        let summary = |name: &str, region: &str| BucketSummary {
            name: name.into(),
            region: region.into(),
            ..BucketSummary::default()
        };
        let (kept, refused) = screen(vec![
            summary("good", "cn-hangzhou"),
            summary("bad\n---", "cn-hangzhou"),
            summary("bad-region", "cn\u{1b}"),
            summary("good", "cn-shanghai"),
        ]);
        assert_eq!(kept, [summary("good", "cn-hangzhou")]);
        assert_eq!(refused.len(), 3);
        for line in &refused {
            assert_eq!(line.lines().count(), 1, "{line}");
            assert!(!line.chars().any(|c| c.is_control() && c != '\n'), "{line:?}");
        }
        assert!(refused[2].contains("more than once"));
        assert_eq!(resource_names(&["kustomization"]), ["kustomization-2"]);
    }

    #[test]
    fn the_kustomization_lists_files_and_names_failures() {
        let text = kustomization(
            &["a.yaml".into()],
            &["# NOT IMPORTED: bucket x (r): denied\n".into()],
        );
        assert!(text.starts_with("# NOT IMPORTED: bucket x"));
        assert!(text.ends_with("resources:\n  - a.yaml\n"));
    }
}
