//! Object encryption coverage (DESIGN 3.7): one bucket's audit, shared by the CLI's `audit` and
//! the controller's opt-in `spec.objectAudit`. List the objects (ListObjectsV2, a page at a
//! time) and read each examined object's encryption (HeadObject), all of them or a uniform
//! sample; the figures are counted by the pure [`figures`]. Read-only: the data-plane client
//! has no call that writes.

pub mod figures;

use futures_util::StreamExt;
use serde::Serialize;

use crate::oss::objects::{ObjectClient, ObjectSummary};
use crate::oss::{BucketTarget, CredentialsProvider, EncryptionRule, OssClient, describe_rule};
pub use figures::{Dated, Reservoir, Share, Tally, wilson_95};

/// The most error messages kept per bucket (the count is always exact).
pub const ERRORS_KEPT: usize = 10;

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
    progress: &mut (dyn FnMut(&str, u64, u64) + Send),
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
            audit.below_rule_share = Some(Share::of(&audit.objects));
            progress(&audit.bucket, audit.listed, audit.objects.examined);
        }
    }
    audit
}
