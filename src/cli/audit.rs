//! `audit`: is the data encrypted as the rule says? (DESIGN 3.7) For each bucket (from manifests,
//! whose rule is the desired one, or the whole account, where the bucket's own rule is), list the
//! objects (ListObjectsV2, a page at a time) and read each examined object's encryption
//! (HeadObject): counts by kind and by CMK, objects below the rule (the downgrade guard's order)
//! with the oldest and newest of them, and with `--sample N` a uniform sample (reservoir
//! sampling over the listing: memory stays flat) with a 95% Wilson score interval for the share
//! below the rule. Read-only. The tally, the reservoir and the interval are pure; `run` does the
//! requests and the output.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use jiff::Timestamp;
use serde::Serialize;

use super::args::{AuditArgs, OutputFormat};
use crate::oss::objects::{EncryptionKind, ObjectClient, ObjectEncryption, ObjectSummary};
use crate::oss::{
    AllowList, BucketTarget, ClientConfig, Credentials, CredentialsProvider, EncryptionRule, Endpoint,
    OssClient, ServiceTarget, SignatureVersion, describe_rule,
};

/// The z value of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The most error messages kept per bucket (the count is always exact).
const ERRORS_KEPT: usize = 10;

/// An object below the rule, dated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dated {
    pub key: String,
    pub last_modified: String,
}

/// What the examined objects of one bucket add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub examined: u64,
    pub below_rule: u64,
    /// Exactly the keys `None`, `AES256`, `SM4`, `KMS`, `KMS+SM4`.
    pub by_encryption: BTreeMap<&'static str, u64>,
    /// KMS objects (with or without SM4) per CMK id as HeadObject reports it.
    pub by_key: BTreeMap<String, u64>,
    pub oldest_below_rule: Option<Dated>,
    pub newest_below_rule: Option<Dated>,
}

impl Tally {
    /// An empty tally with every kind at zero.
    pub fn new() -> Self {
        Self {
            by_encryption: EncryptionKind::ALL.iter().map(|k| (k.as_str(), 0)).collect(),
            ..Self::default()
        }
    }

    /// Counts one examined object (`last_modified` as the listing gives it, ISO 8601).
    pub fn add(
        &mut self,
        key: &str,
        last_modified: &str,
        encryption: &ObjectEncryption,
        desired: Option<&EncryptionRule>,
    ) {
        self.examined += 1;
        *self.by_encryption.entry(encryption.kind().as_str()).or_default() += 1;
        if let Some(id) = encryption.key_id() {
            *self.by_key.entry(id.to_owned()).or_default() += 1;
        }
        if !encryption.is_below(desired) {
            return;
        }
        self.below_rule += 1;
        let dated = Dated {
            key: key.to_owned(),
            last_modified: last_modified.to_owned(),
        };
        let at = |d: &Dated| d.last_modified.parse::<Timestamp>().ok();
        let when = at(&dated);
        // Ties go to the smaller key, so the answer does not depend on the order of answers.
        let earlier = |a: &Dated, b: &Dated| (at(a), &a.key) < (at(b), &b.key);
        if when.is_some() {
            if self
                .oldest_below_rule
                .as_ref()
                .is_none_or(|old| earlier(&dated, old))
            {
                self.oldest_below_rule = Some(dated.clone());
            }
            if self.newest_below_rule.as_ref().is_none_or(|new| {
                (at(new), std::cmp::Reverse(&new.key)) < (when, std::cmp::Reverse(&dated.key))
            }) {
                self.newest_below_rule = Some(dated);
            }
        }
    }
}

/// A uniform sample of a stream of unknown length in `capacity` slots (Algorithm R): after `n`
/// items each has been kept with probability `capacity / n`.
#[derive(Debug)]
pub struct Reservoir<T> {
    capacity: usize,
    seen: u64,
    items: Vec<T>,
}

impl<T> Reservoir<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: 0,
            items: Vec::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// Offers one item; `draw(n)` must return a uniform integer in `0..n`.
    pub fn offer(&mut self, item: T, draw: &mut impl FnMut(u64) -> u64) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(item);
            return;
        }
        let slot = draw(self.seen);
        if slot < self.capacity as u64 {
            self.items[slot as usize] = item;
        }
    }

    /// Items offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// The 95% Wilson score interval for a proportion of `hits` in `n` (`(0, 1)` when `n` is 0).
pub fn wilson_95(hits: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (hits, n) = (hits.min(n) as f64, n as f64);
    let p = hits / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The share below the rule in a sample, with its interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub method: &'static str,
}

/// Requests one bucket's audit made (what it cost).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Requests {
    pub get_bucket_encryption: u64,
    pub list_objects: u64,
    pub head_object: u64,
}

/// One bucket's audit.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketAudit {
    pub bucket: String,
    pub region: String,
    /// The desired rule (`None` = no rule), in the spelling of `algorithm`.
    pub rule: String,
    /// `manifest` (the resource's spec) or `bucket` (the bucket's own rule, `--all-buckets`).
    pub rule_from: &'static str,
    /// `all` or `sample`.
    pub mode: &'static str,
    /// Objects the listing held.
    pub listed: u64,
    pub objects: Tally,
    /// With `--sample`: the share of the bucket below the rule, estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below_rule_share: Option<Share>,
    pub requests: Requests,
    /// Objects that could not be read, and a listing that failed, counted.
    pub error_count: u64,
    /// The first error messages.
    pub errors: Vec<String>,
}

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

/// One bucket to audit, its desired rule known or to be read.
pub struct Subject {
    pub target: BucketTarget,
    /// `Some(rule)`: the manifest's; `None`: read the bucket's own.
    pub desired: Option<Option<EncryptionRule>>,
    pub credentials: CredentialsProvider,
}

/// How many objects of a bucket are examined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Examine {
    All,
    Sample(u64),
}

/// Audits one bucket: read its rule if needed, list, examine, tally. Never writes.
pub async fn audit_bucket(
    management: &OssClient,
    objects: &ObjectClient,
    subject: &Subject,
    examine: Examine,
    prefix: &str,
    concurrency: usize,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> BucketAudit {
    let target = &subject.target;
    let mut audit = BucketAudit {
        bucket: target.bucket.clone(),
        region: target.region.clone(),
        rule: String::new(),
        rule_from: if subject.desired.is_some() {
            "manifest"
        } else {
            "bucket"
        },
        mode: match examine {
            Examine::All => "all",
            Examine::Sample(_) => "sample",
        },
        listed: 0,
        objects: Tally::new(),
        below_rule_share: None,
        requests: Requests::default(),
        error_count: 0,
        errors: Vec::new(),
    };
    let fail = |audit: &mut BucketAudit, message: String| {
        audit.error_count += 1;
        if audit.errors.len() < ERRORS_KEPT {
            audit.errors.push(crate::oss::list::printable(&message));
        }
    };
    let desired = match &subject.desired {
        Some(rule) => rule.clone(),
        None => {
            audit.requests.get_bucket_encryption += 1;
            match management.get_encryption(target, &subject.credentials).await {
                Ok(reply) => reply.value,
                Err(error) => {
                    audit.rule = "?".into();
                    fail(&mut audit, format!("reading the bucket's rule: {error}"));
                    return audit;
                }
            }
        }
    };
    audit.rule = describe_rule(desired.as_ref());
    let credentials = &subject.credentials;
    let mut pages =
        std::pin::pin!(objects.object_pages(target, credentials, prefix, crate::oss::objects::MAX_KEYS));
    let head = |object: ObjectSummary| async move {
        let result = objects.head_object(target, credentials, &object.key).await;
        (object, result)
    };
    let tally_one =
        |audit: &mut BucketAudit, object: ObjectSummary, result: Result<_, crate::oss::OssError>| {
            audit.requests.head_object += 1;
            match result {
                Ok(reply) => {
                    let reply: crate::oss::Reply<crate::oss::objects::ObjectHead> = reply;
                    audit.objects.add(
                        &object.key,
                        &object.last_modified,
                        &reply.value.encryption,
                        desired.as_ref(),
                    );
                }
                Err(error) => fail(audit, format!("object {:?}: {error}", object.key)),
            }
        };
    match examine {
        Examine::All => {
            while let Some(page) = pages.next().await {
                audit.requests.list_objects += 1;
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        fail(&mut audit, format!("listing objects: {error}"));
                        break;
                    }
                };
                audit.listed += page.objects.len() as u64;
                let mut heads = futures_util::stream::iter(page.objects.into_iter().map(head))
                    .buffer_unordered(concurrency.max(1));
                while let Some((object, result)) = heads.next().await {
                    tally_one(&mut audit, object, result);
                }
                progress(&audit.bucket, audit.listed, audit.objects.examined);
            }
        }
        Examine::Sample(size) => {
            let mut reservoir = Reservoir::new(usize::try_from(size).unwrap_or(usize::MAX));
            let mut rng = fastrand::Rng::new();
            let mut draw = |n: u64| rng.u64(..n);
            while let Some(page) = pages.next().await {
                audit.requests.list_objects += 1;
                match page {
                    Ok(page) => {
                        for object in page.objects {
                            reservoir.offer(object, &mut draw);
                        }
                    }
                    Err(error) => {
                        fail(&mut audit, format!("listing objects: {error}"));
                        break;
                    }
                }
                progress(&audit.bucket, reservoir.seen(), 0);
            }
            audit.listed = reservoir.seen();
            let mut heads = futures_util::stream::iter(reservoir.into_items().into_iter().map(head))
                .buffer_unordered(concurrency.max(1));
            while let Some((object, result)) = heads.next().await {
                tally_one(&mut audit, object, result);
            }
            let (low, high) = wilson_95(audit.objects.below_rule, audit.objects.examined);
            audit.below_rule_share = Some(Share {
                estimate: if audit.objects.examined == 0 {
                    0.0
                } else {
                    audit.objects.below_rule as f64 / audit.objects.examined as f64
                },
                low,
                high,
                method: "Wilson score interval, 95%",
            });
            progress(&audit.bucket, audit.listed, audit.objects.examined);
        }
    }
    audit
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
    use crate::oss::SseAlgorithm;

    #[test]
    fn the_tally_counts_kinds_keys_and_the_dated_extremes_below_the_rule() {
        let rule = EncryptionRule::kms(Some("k1"), None);
        let kms = |key: &str, sm4| ObjectEncryption::Kms {
            key_id: key.into(),
            sm4,
        };
        let mut tally = Tally::new();
        tally.add(
            "a",
            "2024-03-01T00:00:00.000Z",
            &ObjectEncryption::None,
            Some(&rule),
        );
        tally.add(
            "b",
            "2023-01-01T00:00:00.000Z",
            &ObjectEncryption::Aes256,
            Some(&rule),
        );
        tally.add(
            "c",
            "2025-01-01T00:00:00.000Z",
            &ObjectEncryption::Sm4,
            Some(&rule),
        );
        tally.add("d", "2020-01-01T00:00:00.000Z", &kms("k2", true), Some(&rule));
        tally.add("e", "2026-01-01T00:00:00.000Z", &kms("k1", false), Some(&rule));
        tally.add("f", "2026-01-01T00:00:00.000Z", &kms("k1", false), Some(&rule));
        assert_eq!(tally.examined, 6);
        assert_eq!(tally.below_rule, 3);
        let counts: Vec<(&str, u64)> = tally.by_encryption.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(
            counts,
            [("AES256", 1), ("KMS", 2), ("KMS+SM4", 1), ("None", 1), ("SM4", 1)]
        );
        assert_eq!(tally.by_key, BTreeMap::from([("k1".into(), 2), ("k2".into(), 1)]));
        assert_eq!(tally.oldest_below_rule.as_ref().unwrap().key, "b");
        assert_eq!(tally.newest_below_rule.as_ref().unwrap().key, "c");
        let mut none_rule = Tally::new();
        none_rule.add("a", "x", &ObjectEncryption::None, None);
        assert_eq!(none_rule.below_rule, 0, "nothing is below no rule");
        let mut aes = Tally::new();
        aes.add(
            "a",
            "x",
            &ObjectEncryption::Sm4,
            Some(&EncryptionRule::new(SseAlgorithm::Aes256)),
        );
        assert_eq!(aes.below_rule, 0, "SM4 is lateral to AES256");
    }

    #[test]
    fn the_reservoir_keeps_exactly_its_capacity_and_samples_uniformly() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut draw = |n: u64| rng.u64(..n);
        let mut hits = [0u32; 10];
        for _ in 0..2000 {
            let mut reservoir = Reservoir::new(3);
            for i in 0..10 {
                reservoir.offer(i, &mut draw);
            }
            assert_eq!(reservoir.seen(), 10);
            let items = reservoir.into_items();
            assert_eq!(items.len(), 3);
            for i in items {
                hits[i] += 1;
            }
        }
        // Each item is kept with probability 3/10: 600 of 2000 runs, within a wide margin.
        for (i, h) in hits.iter().enumerate() {
            assert!((480..=720).contains(h), "item {i} kept {h} times");
        }
        let mut small = Reservoir::new(5);
        for i in 0..2 {
            small.offer(i, &mut draw);
        }
        assert_eq!(small.into_items(), [0, 1], "fewer items than slots: all of them");
    }

    #[test]
    fn the_wilson_interval_matches_published_values() {
        // 0 of 1000: [0, 0.0038]; 50 of 1000: [0.0381, 0.0653]; n = 0: no information. (Values
        // from the formula in Wilson 1927 / Agresti & Coull 1998, computed independently.)
        let (low, high) = wilson_95(0, 1000);
        assert!(
            low.abs() < 1e-12 && (high - 0.003_826_76).abs() < 1e-7,
            "{low} {high}"
        );
        let (low, high) = wilson_95(50, 1000);
        assert!(
            (low - 0.038_130_26).abs() < 1e-7 && (high - 0.065_313_82).abs() < 1e-7,
            "{low} {high}"
        );
        assert_eq!(wilson_95(0, 0), (0.0, 1.0));
        let (low, high) = wilson_95(10, 10);
        assert!(
            (low - 0.722_467_2).abs() < 1e-7 && (high - 1.0).abs() < 1e-12,
            "{low} {high}"
        );
    }

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
