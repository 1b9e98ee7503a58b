//! `oss-emulator`: the bundled OSS emulator as a standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use oss_encryption_operator::emulator::{Emulator, EmulatorConfig, KmsKey};

/// A local stand-in for Alibaba Cloud OSS's bucket-encryption APIs (Put/Get/DeleteBucketEncryption)
/// with STS AssumeRoleWithOIDC and KMS DescribeKey. It verifies V1/V4 (OSS) and ACS3/ACS4/RPC (KMS)
/// signatures, answers with the services' error codes, and has an unauthenticated admin API under
/// /_emulator/ (buckets, rules, KMS keys, counters, faults).
/// For tests and demos only: keep it on loopback.
#[derive(Parser, Debug)]
#[command(name = "oss-emulator", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,

    /// An access key the emulator accepts, as ID:SECRET (repeatable).
    #[arg(
        long = "access-key",
        value_name = "ID:SECRET",
        env = "OSS_EMULATOR_ACCESS_KEYS",
        value_delimiter = ','
    )]
    access_keys: Vec<String>,

    /// A bucket to create at start, as NAME or NAME@REGION (repeatable).
    #[arg(long = "bucket", value_name = "NAME[@REGION]")]
    buckets: Vec<String>,

    /// Region of buckets created without one.
    #[arg(long, default_value = "cn-hangzhou")]
    region: String,

    /// An OIDC token that STS AssumeRoleWithOIDC accepts (repeatable).
    #[arg(long = "oidc-token", value_name = "TOKEN")]
    oidc_tokens: Vec<String>,

    /// A KMS key (Enabled, Aliyun_AES_256, ENCRYPT/DECRYPT) as ID, ID@REGION or ID@REGION=ALIAS
    /// (repeatable; the alias as alias/NAME). Change its state through the admin API.
    #[arg(long = "kms-key", value_name = "ID[@REGION][=ALIAS]")]
    kms_keys: Vec<String>,

    /// Keep buckets and rules in this JSON file, so a restart loses nothing.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match serve(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut access_keys = Vec::new();
    for pair in &args.access_keys {
        let (id, secret) = pair
            .split_once(':')
            .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
            .ok_or("--access-key must be ID:SECRET (an entry has no ':' or an empty part)")?;
        access_keys.push((id.to_owned(), secret.to_owned()));
    }
    let mut buckets = Vec::new();
    for spec in &args.buckets {
        let (name, region) = spec.split_once('@').unwrap_or((spec, &args.region));
        oss_encryption_operator::oss::endpoint::validate_bucket_name(name)?;
        oss_encryption_operator::oss::endpoint::validate_region(region)?;
        buckets.push((name.to_owned(), region.to_owned()));
    }
    let mut kms_keys = Vec::new();
    for spec in &args.kms_keys {
        let (id_region, alias) = spec.split_once('=').unwrap_or((spec, ""));
        let (id, region) = id_region.split_once('@').unwrap_or((id_region, &args.region));
        if id.is_empty() || id.contains(['/', ':']) {
            return Err(
                format!("--kms-key {spec:?}: the key id must be non-empty, without '/' or ':'").into(),
            );
        }
        if !alias.is_empty() && !alias.starts_with("alias/") {
            return Err(format!("--kms-key {spec:?}: an alias starts with alias/").into());
        }
        oss_encryption_operator::oss::endpoint::validate_region(region)?;
        let key = KmsKey {
            region: region.to_owned(),
            aliases: (!alias.is_empty())
                .then(|| alias.to_owned())
                .into_iter()
                .collect(),
            ..KmsKey::default()
        };
        kms_keys.push((id.to_owned(), key));
    }
    let emulator = Emulator::start(EmulatorConfig {
        listen: args.listen,
        access_keys,
        buckets,
        default_region: args.region,
        oidc_tokens: args.oidc_tokens,
        kms_keys,
        persist_path: args.state,
        ..EmulatorConfig::default()
    })
    .await?;
    println!("OSS emulator listening on {}", emulator.url());
    oss_encryption_operator::shutdown_signal().await;
    emulator.stop().await;
    Ok(())
}
