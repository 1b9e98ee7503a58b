//! The `oss-encryption-operator` command line. Thin: the work is in the library.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use oss_encryption_operator::leader::{self, Election, Ended};
use oss_encryption_operator::oss::{AllowList, ClientConfig, CredentialsProvider, OssClient};
use oss_encryption_operator::reconcile::{self, Health, Settings, Shutdown};
use oss_encryption_operator::telemetry::{self, Metrics};

/// Keeps Alibaba Cloud OSS bucket default encryption equal to declared BucketEncryption resources.
#[derive(Parser, Debug)]
#[command(name = "oss-encryption-operator", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what apply would change: read each bucket's rule and compare it with the manifests.
    /// Works without a cluster.
    Plan {
        #[command(flatten)]
        common: ManifestArgs,
        /// Exit 0 when nothing would change, 2 when changes are pending, 1 on any error.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Make each bucket's rule equal to the manifests (the controller's engine, once) and print
    /// what was done. Idempotent: a second run changes nothing.
    Apply {
        #[command(flatten)]
        common: ManifestArgs,
    },
    /// Run the controller: reconcile BucketEncryption resources of the cluster in the current
    /// kubeconfig context (KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    Run(RunArgs),
    /// Start the embedded OSS emulator and drive the OSS client through every encryption rule
    /// (put, read back, delete) with V4 and V1 signatures; exits non-zero if anything differs.
    Demo,
    /// Print the BucketEncryption CustomResourceDefinition as YAML (what crds/bucketencryption.yaml holds).
    Crd {
        /// Print the resource reference (Markdown table) instead.
        #[arg(long)]
        reference: bool,
    },
    /// Print the version.
    Version,
}

/// Flags shared by `plan` and `apply`.
#[derive(Args, Debug)]
struct ManifestArgs {
    /// Files or directories of BucketEncryption manifests (YAML, multi-document, or JSON);
    /// Secrets they name may be among them. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    paths: Vec<std::path::PathBuf>,

    /// Namespace of documents that do not name one.
    #[arg(long, default_value = "default")]
    namespace: String,

    /// Start the bundled OSS emulator in-process, create the buckets the manifests name, and
    /// target it instead of Alibaba Cloud (every resource uses the emulator's key).
    #[arg(long)]
    emulator: bool,

    /// Send every request to this endpoint instead of each resource's own (host or https URL).
    #[arg(long, conflicts_with = "emulator")]
    endpoint: Option<String>,

    /// A YAML or JSON file with accessKeyId, accessKeySecret and optionally securityToken, for
    /// resources whose Secret is not among the manifests (default: the environment, then RRSA).
    #[arg(long, value_name = "FILE")]
    credentials_file: Option<std::path::PathBuf>,

    /// Where credentials may be sent (as for `run`).
    #[arg(long, value_delimiter = ',', default_value = ".aliyuncs.com")]
    allowed_endpoint_suffixes: Vec<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OutputFormat {
    Table,
    Json,
}

/// Reads `--credentials-file`.
fn credentials_file(path: &std::path::Path) -> Result<oss_encryption_operator::oss::Credentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: not YAML or JSON: {e}", path.display()))?;
    let get = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let missing = |key: &str| format!("{}: no {key}", path.display());
    let id = get("accessKeyId").ok_or_else(|| missing("accessKeyId"))?;
    let secret = get("accessKeySecret").ok_or_else(|| missing("accessKeySecret"))?;
    Ok(oss_encryption_operator::oss::Credentials::new(id, secret)
        .with_security_token(get("securityToken").unwrap_or("")))
}

/// `plan` and `apply`: exit code 0, 1 (errors) or, with `--detailed-exitcode`, 2 (changes pending).
async fn manifests_command(
    mode: oss_encryption_operator::cli::Mode,
    args: ManifestArgs,
    detailed_exitcode: bool,
) -> Result<u8, Box<dyn std::error::Error>> {
    use oss_encryption_operator::cli;
    let manifests = oss_encryption_operator::manifest::load(&args.paths, &args.namespace);
    let config = ClientConfig {
        allow_list: AllowList::new(&args.allowed_endpoint_suffixes),
        ..ClientConfig::default()
    };
    let (emulator, engine) = if args.emulator {
        let (emulator, engine) = cli::emulated(&manifests, config).await?;
        (Some(emulator), engine)
    } else {
        let client = OssClient::new(config)?;
        let default_credentials = match &args.credentials_file {
            Some(path) => Some(credentials_file(path)?.into()),
            None => CredentialsProvider::from_env(client.http().clone()).ok(),
        };
        let endpoint_override = args
            .endpoint
            .as_deref()
            .map(oss_encryption_operator::oss::Endpoint::parse)
            .transpose()?;
        (
            None,
            cli::Engine {
                client,
                default_credentials,
                endpoint_override,
                ignore_secrets: false,
            },
        )
    };
    let report = cli::run(mode, &manifests, &engine).await;
    match args.output {
        OutputFormat::Table => {
            if let Some(emulator) = &emulator {
                println!("OSS emulator at {} (--emulator)\n", emulator.url());
            }
            print!("{}", cli::table(&report, mode));
        }
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(emulator) = emulator {
        emulator.stop().await;
    }
    Ok(match (report.errors, report.changes, detailed_exitcode) {
        (errors, _, _) if errors > 0 => 1,
        (_, changes, true) if changes > 0 => 2,
        _ => 0,
    })
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

    /// Reconciles running at once (across all watched namespaces).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,

    /// With deletionPolicy Delete, how long deletion retries a rule removal that fails
    /// transiently (OSS 5xx, throttling) before it retains the rule, warns and lets the
    /// resource go.
    #[arg(long, default_value = "5m", value_parser = parse_timeout)]
    deletion_timeout: Duration,

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

    /// Run several replicas: only the holder of a coordination.k8s.io Lease reconciles.
    #[arg(long)]
    leader_election: bool,

    /// Namespace of the Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,

    /// Name of the Lease; shards (--namespace, --label-selector) need one each.
    #[arg(long, default_value = "oss-encryption-operator")]
    leader_election_lease: String,

    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,

    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,

    /// The reportingInstance of events (defaults to the pod name).
    #[arg(long, env = "POD_NAME", default_value = "oss-encryption-operator")]
    instance: String,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    match oss_encryption_operator::api::parse_duration(text) {
        Some(d) if d < oss_encryption_operator::api::MIN_RESYNC => Err("must be at least 30s".into()),
        Some(d) if d > oss_encryption_operator::api::MAX_RESYNC => Err("must be at most 24h".into()),
        Some(d) => Ok(d),
        None => Err(format!("{text:?} is not a duration such as 90s, 5m or 1h")),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match oss_encryption_operator::api::parse_duration(text) {
        Some(d) if d <= Duration::from_secs(24 * 3600) => Ok(d),
        Some(_) => Err("must be at most 24h".into()),
        None => Err(format!("{text:?} is not a duration such as 90s, 5m or 1h")),
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !(args.oss_qps > 0.0 && args.oss_qps.is_finite()) {
        return Err("--oss-qps must be a positive number".into());
    }
    let client = kube::Client::try_default().await?;
    let metrics = std::sync::Arc::new(Metrics::new());
    let oss = OssClient::new(ClientConfig {
        qps: args.oss_qps,
        burst: args.oss_burst,
        allow_list: AllowList::new(&args.allowed_endpoint_suffixes),
        observer: Some(metrics.oss_observer()),
        ..ClientConfig::default()
    })?;
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr))?;
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
        deletion_timeout: args.deletion_timeout,
    };
    tracing::info!(?settings, "starting the controller");
    // One shutdown signal for the HTTP server, the election and the controller.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        oss_encryption_operator::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let health = Health::default();
    let server = tokio::spawn(telemetry::serve(
        listener,
        health.probe(metrics.clone()),
        stopped(),
    ));
    let instance = settings.instance.clone();
    if args.leader_election {
        let election = Election {
            namespace: args.leader_election_namespace,
            lease: args.leader_election_lease,
            identity: instance,
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        };
        let work = |stop: leader::StopSignal| {
            reconcile::run(
                client.clone(),
                oss,
                operator_credentials,
                settings,
                metrics,
                health,
                async move { Shutdown::from(stop.await) },
            )
        };
        let ended = leader::lead(client.clone(), election, work, stopped()).await?;
        if ended == Ended::LeadershipLost {
            return Err("lost the leader lease; exiting so that a fresh start waits for it again".into());
        }
    } else {
        let stop = stopped();
        reconcile::run(
            client,
            oss,
            operator_credentials,
            settings,
            metrics,
            health,
            async move {
                stop.await;
                Shutdown::Graceful
            },
        )
        .await;
    }
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Run(args) => telemetry::init_logging(args.log_format, "info"),
        _ => telemetry::init_logging(telemetry::LogFormat::Text, "warn"),
    }
    match cli.command {
        Command::Plan {
            common,
            detailed_exitcode,
        } => exit_with(
            manifests_command(
                oss_encryption_operator::cli::Mode::Plan,
                common,
                detailed_exitcode,
            )
            .await,
        ),
        Command::Apply { common } => {
            exit_with(manifests_command(oss_encryption_operator::cli::Mode::Apply, common, false).await)
        }
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
        Command::Crd { reference } => {
            if reference {
                print!("{}", oss_encryption_operator::api::reference_markdown());
            } else {
                print!("{}", oss_encryption_operator::api::crd_yaml());
            }
            std::process::ExitCode::SUCCESS
        }
        Command::Version => {
            println!("oss-encryption-operator {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
    }
}

fn exit_with(result: Result<u8, Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
