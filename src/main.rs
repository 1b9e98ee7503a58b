//! The `oss-encryption-operator` command line. Thin: the work is in the library.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use oss_encryption_operator::oss::{AllowList, ClientConfig, CredentialsProvider, OssClient};
use oss_encryption_operator::reconcile::controller::{self, Settings};

/// Keeps Alibaba Cloud OSS bucket default encryption equal to declared BucketEncryption resources.
#[derive(Parser, Debug)]
#[command(name = "oss-encryption-operator", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller: reconcile BucketEncryption resources of the cluster in the current
    /// kubeconfig context (KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    Run(RunArgs),
    /// Start the embedded OSS emulator and drive the OSS client through every encryption rule
    /// (put, read back, delete) with V4 and V1 signatures; exits non-zero if anything differs.
    Demo,
    /// Print the BucketEncryption CustomResourceDefinition as YAML (what crds/bucketencryption.yaml holds).
    Crd,
    /// Print the version.
    Version,
}

/// Flags of `run`.
#[derive(Args, Debug)]
struct RunArgs {
    /// Watch only this namespace (repeatable); default: all namespaces.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    namespaces: Vec<String>,

    /// Reconcile only resources matching this label selector (e.g. shard=a).
    #[arg(long, value_name = "SELECTOR")]
    label_selector: Option<String>,

    /// How often in-sync buckets are re-read for drift, unless a resource sets spec.resyncInterval.
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    resync_interval: Duration,

    /// Reconciles running at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,

    /// OSS requests per second across all reconciles (the account's management-API budget).
    #[arg(long, default_value_t = 10.0)]
    oss_qps: f64,

    /// OSS requests allowed at once after an idle period.
    #[arg(long, default_value_t = 10)]
    oss_burst: u32,

    /// Where credentials may be sent: `.suffix` entries match by suffix, others exactly
    /// (host or host:port). Comma-separated or repeated.
    #[arg(long, value_delimiter = ',', default_value = ".aliyuncs.com")]
    allowed_endpoint_suffixes: Vec<String>,

    /// Use the operator's own credentials (environment or RRSA) for resources without
    /// spec.credentials. Set to false on multi-tenant clusters.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allow_operator_credentials: bool,

    /// The reportingInstance of events (defaults to the pod name).
    #[arg(long, env = "POD_NAME", default_value = "oss-encryption-operator")]
    instance: String,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    match oss_encryption_operator::api::parse_duration(text) {
        Some(d) if d >= oss_encryption_operator::api::MIN_RESYNC => Ok(d),
        Some(_) => Err("must be at least 30s".into()),
        None => Err(format!("{text:?} is not a duration such as 90s, 5m or 1h")),
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !(args.oss_qps > 0.0 && args.oss_qps.is_finite()) {
        return Err("--oss-qps must be a positive number".into());
    }
    let client = kube::Client::try_default().await?;
    let oss = OssClient::new(ClientConfig {
        qps: args.oss_qps,
        burst: args.oss_burst,
        allow_list: AllowList::new(&args.allowed_endpoint_suffixes),
        ..ClientConfig::default()
    })?;
    let operator_credentials = if args.allow_operator_credentials {
        match CredentialsProvider::from_env(oss.http().clone()) {
            Ok(provider) => Some(provider),
            Err(error) => {
                tracing::warn!(%error, "no operator credentials: resources must name a Secret");
                None
            }
        }
    } else {
        None
    };
    let settings = Settings {
        namespaces: args.namespaces,
        label_selector: args.label_selector,
        resync_interval: args.resync_interval,
        concurrency: args.concurrency,
        instance: args.instance,
    };
    tracing::info!(?settings, "starting the controller");
    controller::run(
        client,
        oss,
        operator_credentials,
        settings,
        oss_encryption_operator::shutdown_signal(),
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run(args) => match run(args).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Demo => match oss_encryption_operator::demo::run().await {
            Ok(report) => {
                print!("{report}");
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Crd => {
            print!("{}", oss_encryption_operator::api::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Version => {
            println!("oss-encryption-operator {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
    }
}
