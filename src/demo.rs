//! `oss-encryption-operator demo`: starts the embedded OSS emulator and drives the real client
//! through every rule (put, read back, delete) with V4 and V1 signatures, printing what OSS said.

use std::fmt::Write as _;

use crate::emulator::{Emulator, EmulatorConfig};
use crate::oss::{
    BucketTarget, ClientConfig, Credentials, CredentialsProvider, DataEncryption, EncryptionRule, OssClient,
    OssError, SignatureVersion, SseAlgorithm,
};

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("could not start the embedded OSS emulator: {0}")]
    Emulator(#[from] std::io::Error),
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    Oss(#[from] OssError),
    #[error("step {step}: read back {observed}, expected {expected}")]
    Mismatch {
        step: usize,
        observed: String,
        expected: String,
    },
    #[error("bad bucket or region: {0}")]
    Endpoint(#[from] crate::oss::EndpointError),
}

fn describe(rule: &Option<EncryptionRule>) -> String {
    crate::oss::describe_rule(rule.as_ref())
}

/// Runs the demo and returns the printed report.
pub async fn run() -> Result<String, DemoError> {
    let access_key_id = format!("LTAI5tDemo{:08x}", fastrand::u32(..));
    let secret = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let bucket = "quickstart-audit-logs";
    let region = "cn-hangzhou";
    let emulator = Emulator::start(EmulatorConfig {
        access_keys: vec![(access_key_id.clone(), secret.clone())],
        buckets: vec![(bucket.to_owned(), region.to_owned())],
        ..EmulatorConfig::default()
    })
    .await?;

    let mut config = ClientConfig::default();
    config.allow_list.allow(emulator.endpoint().authority());
    let client = OssClient::new(config)?;
    let credentials = CredentialsProvider::from(Credentials::new(access_key_id, secret));
    let v4 = BucketTarget::new(bucket, region)?.with_endpoint(emulator.endpoint());
    let v1 = v4.clone().with_signature_version(SignatureVersion::V1);

    let wanted = [
        Some(EncryptionRule::new(SseAlgorithm::Aes256)),
        Some(EncryptionRule::kms(None, None)),
        Some(EncryptionRule::kms(
            Some("9468da86-3509-4f8d-a61e-6eab1eac0000"),
            Some(DataEncryption::Sm4),
        )),
        Some(EncryptionRule::new(SseAlgorithm::Sm4)),
        None,
    ];

    let mut out = String::new();
    let _ = writeln!(
        out,
        "OSS emulator at {} with bucket {bucket} ({region})\n",
        emulator.url()
    );
    let _ = writeln!(
        out,
        "{:<5} {:<24} {:<4} {:<58} REQUEST ID",
        "STEP", "API", "SIG", "RULE"
    );
    let mut step = 0;
    let mut row = |out: &mut String, api: &str, target: &BucketTarget, rule: String, id: &str| {
        step += 1;
        let sig = format!("{:?}", target.signature_version);
        let _ = writeln!(out, "{step:<5} {api:<24} {sig:<4} {rule:<58} {id}");
        step
    };

    let initial = client.get_encryption(&v4, &credentials).await?;
    row(
        &mut out,
        "GetBucketEncryption",
        &v4,
        describe(&initial.value),
        &initial.request_id,
    );
    for (i, rule) in wanted.iter().enumerate() {
        let target = if i % 2 == 0 { &v4 } else { &v1 };
        let written = match rule {
            Some(rule) => client.put_encryption(target, &credentials, rule).await?,
            None => client.delete_encryption(target, &credentials).await?,
        };
        let api = if rule.is_some() {
            "PutBucketEncryption"
        } else {
            "DeleteBucketEncryption"
        };
        row(&mut out, api, target, describe(rule), &written.request_id);
        let read = client.get_encryption(target, &credentials).await?;
        let at = row(
            &mut out,
            "GetBucketEncryption",
            target,
            describe(&read.value),
            &read.request_id,
        );
        if read.value != *rule {
            return Err(DemoError::Mismatch {
                step: at,
                observed: describe(&read.value),
                expected: describe(rule),
            });
        }
    }
    let counters = emulator.state().counters();
    let _ = writeln!(
        out,
        "\nEvery rule read back as written. Requests the emulator answered, by API and status:"
    );
    for (api, by_status) in &counters {
        let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("{s}x{n}")).collect();
        let _ = writeln!(out, "  {api:<24} {}", statuses.join(" "));
    }
    emulator.stop().await;
    Ok(out)
}
