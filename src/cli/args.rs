//! The command line's shape (clap): subcommands and their flags. No behaviour here.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Keeps Alibaba Cloud OSS bucket default encryption equal to declared BucketEncryption resources.
#[derive(Parser, Debug)]
#[command(name = "oss-encryption-operator", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// List the account's buckets, read each one's rule, and write one BucketEncryption per
    /// bucket (Observe and Retain unless --manage) plus a kustomization.yaml: the account into
    /// Git. `plan` over the result reports no change.
    Import(ImportArgs),
    /// Is the data encrypted as the rule says? List each bucket's objects and read each examined
    /// object's encryption (HeadObject): counts by encryption and CMK, objects below the rule,
    /// and with --sample a uniform sample with a 95% interval. Read-only; exit 1 when an
    /// examined object is below the rule.
    Audit(AuditArgs),
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
        /// Print the BucketEncryptionPolicy CRD (crds/bucketencryptionpolicy.yaml) instead.
        #[arg(long, conflicts_with = "reference")]
        policy: bool,
        /// Print the BucketEncryptionGrant CRD (crds/bucketencryptiongrant.yaml) instead.
        #[arg(long, conflicts_with_all = ["reference", "policy"])]
        grant: bool,
    },
    /// Print the version.
    Version,
}

/// Flags shared by `plan` and `apply`.
#[derive(Args, Debug)]
pub struct ManifestArgs {
    /// Files or directories of BucketEncryption manifests (YAML, multi-document, or JSON);
    /// Secrets they name may be among them. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub paths: Vec<std::path::PathBuf>,

    /// Namespace of documents that do not name one.
    #[arg(long, default_value = "default")]
    pub namespace: String,

    /// Start the bundled OSS emulator in-process, create the buckets the manifests name, and
    /// target it instead of Alibaba Cloud (every resource uses the emulator's key).
    #[arg(long)]
    pub emulator: bool,

    /// Send every request to this endpoint instead of each resource's own (host or https URL).
    #[arg(long, conflicts_with = "emulator")]
    pub endpoint: Option<String>,

    /// A YAML or JSON file with accessKeyId, accessKeySecret and optionally securityToken, for
    /// resources whose Secret is not among the manifests (default: the environment, then RRSA).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<std::path::PathBuf>,

    /// Where credentials may be sent (as for `run`).
    #[arg(long, value_delimiter = ',', default_value = ".aliyuncs.com")]
    pub allowed_endpoint_suffixes: Vec<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,

    /// Resources handled at once (output stays in manifest order).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    #[command(flatten)]
    pub rate: OssRateArgs,

    #[command(flatten)]
    pub kms: KmsArgs,

    /// Write rules weaker than the bucket's current one (None < AES256 = SM4 < KMS) even where
    /// the manifest does not set allowDowngrade: true. Without it such rows are blocked.
    #[arg(long)]
    pub allow_downgrade: bool,
}

/// Flags of `import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Import only buckets in this region (repeatable; default: every region). The first one is
    /// also the endpoint the account is listed through.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,

    /// Import only buckets whose name starts with this.
    #[arg(long, default_value = "")]
    pub prefix: String,

    /// Namespace of the resources written.
    #[arg(long, default_value = "default")]
    pub namespace: String,

    /// Write managementPolicy: Manage (the operator will correct drift) instead of Observe.
    #[arg(long)]
    pub manage: bool,

    /// Write one file per resource and a kustomization.yaml into this directory (created if
    /// missing; existing files are never overwritten). Default: every resource on stdout.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<std::path::PathBuf>,

    /// Send every request to this endpoint instead of the regions' own (host or https URL).
    #[arg(long)]
    pub endpoint: Option<String>,

    /// A YAML or JSON file with accessKeyId, accessKeySecret and optionally securityToken
    /// (default: the environment, then RRSA).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<std::path::PathBuf>,

    /// Where credentials may be sent (as for `run`).
    #[arg(long, value_delimiter = ',', default_value = ".aliyuncs.com")]
    pub allowed_endpoint_suffixes: Vec<String>,

    /// Buckets whose rule is read at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    #[command(flatten)]
    pub rate: OssRateArgs,
}

/// Flags of `audit`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("buckets").required(true).args(["paths", "all_buckets"])))]
pub struct AuditArgs {
    /// Files or directories of BucketEncryption manifests: their buckets, each against the
    /// manifest's rule. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,

    /// Every bucket of the account (ListBuckets), each against its own default rule.
    #[arg(long, conflicts_with = "paths")]
    pub all_buckets: bool,

    /// With --all-buckets: only buckets in this region (repeatable). The first one is also the
    /// endpoint the account is listed through.
    #[arg(long = "region", value_name = "REGION", requires = "all_buckets")]
    pub regions: Vec<String>,

    /// With --all-buckets: only buckets whose name starts with this.
    #[arg(long, default_value = "", requires = "all_buckets")]
    pub bucket_prefix: String,

    /// Only objects whose key starts with this.
    #[arg(long, default_value = "")]
    pub prefix: String,

    /// Examine a uniform sample of N objects per bucket (the whole listing is read, N HeadObject
    /// requests are sent) and estimate the share below the rule with a 95% interval.
    #[arg(long, value_name = "N", conflicts_with = "all", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub sample: Option<u64>,

    /// Examine every object (one HeadObject request each; the default).
    #[arg(long)]
    pub all: bool,

    /// Namespace of documents that do not name one.
    #[arg(long, default_value = "default")]
    pub namespace: String,

    /// Send every request to this endpoint instead of each bucket's own (host or https URL).
    #[arg(long)]
    pub endpoint: Option<String>,

    /// A YAML or JSON file with accessKeyId, accessKeySecret and optionally securityToken
    /// (default: a Secret among the manifests, then the environment, then RRSA).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<std::path::PathBuf>,

    /// Where credentials may be sent (as for `run`).
    #[arg(long, value_delimiter = ',', default_value = ".aliyuncs.com")]
    pub allowed_endpoint_suffixes: Vec<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,

    /// HeadObject requests in flight at once (per bucket; buckets are audited one after another).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// The most data-plane requests (ListObjectsV2, HeadObject) per second: the ceiling of their
    /// own adaptive limiter, apart from the management calls' (OSS documents 10,000 per account).
    #[arg(long, default_value_t = 2000.0, value_parser = parse_qps)]
    pub data_qps: f64,

    /// Data-plane requests allowed at once after an idle period.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub data_burst: u32,

    #[command(flatten)]
    pub rate: OssRateArgs,
}

/// The KMS key pre-flight (`run`, `plan` and `apply` alike).
#[derive(Args, Debug, Clone)]
pub struct KmsArgs {
    /// Before writing a rule with a CMK id, and on every resync of a bucket whose rule names one,
    /// ask KMS DescribeKey whether OSS can use the key (exists, Enabled, symmetric
    /// ENCRYPT/DECRYPT, the bucket's region). Needs the RAM permission kms:DescribeKey; a check
    /// that cannot run reports KeyCheckFailed and writes nothing. false switches it off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub kms_preflight: bool,

    /// Send KMS calls here instead of https://kms.<region>.aliyuncs.com (host or URL; must pass
    /// the endpoint allow-list).
    #[arg(long, value_name = "ENDPOINT")]
    pub kms_endpoint: Option<String>,

    /// public: kms.<region>.aliyuncs.com; vpc: kms-vpc.<region>.aliyuncs.com.
    #[arg(long, value_enum, default_value = "public")]
    pub kms_network: crate::kms::Network,

    /// How long a DescribeKey answer is reused for every bucket naming the same key.
    #[arg(long, default_value = "1m", value_parser = parse_timeout)]
    pub kms_cache_ttl: Duration,

    /// The most KMS requests per second (a ceiling; adaptive below it when KMS throttles: the
    /// shared gateway's quota for key queries is 50/s per account and region).
    #[arg(long, default_value_t = crate::kms::DEFAULT_QPS_CEILING, value_parser = parse_qps)]
    pub kms_qps: f64,
}

impl KmsArgs {
    /// The key checker these flags ask for (`None` with --kms-preflight=false), sending
    /// credentials only where `allow_list` allows.
    pub fn checker(
        &self,
        allow_list: crate::oss::AllowList,
        observer: Option<crate::kms::KmsObserver>,
    ) -> Result<Option<crate::kms::KeyChecker>, Box<dyn std::error::Error>> {
        if !self.kms_preflight {
            return Ok(None);
        }
        let endpoint = match &self.kms_endpoint {
            Some(text) => {
                Some(crate::oss::Endpoint::parse(text).map_err(|e| format!("--kms-endpoint: {e}"))?)
            }
            None => None,
        };
        let config = crate::kms::KmsConfig {
            qps: self.kms_qps,
            network: self.kms_network,
            endpoint,
            allow_list,
            observer,
            ..crate::kms::KmsConfig::default()
        };
        let client = crate::kms::KmsClient::new(config)?;
        Ok(Some(crate::kms::KeyChecker::new(client, self.kms_cache_ttl)))
    }
}

/// How fast the OSS client may go (`run`, `plan` and `apply` alike).
#[derive(Args, Debug, Clone)]
pub struct OssRateArgs {
    /// The most OSS requests per second, across everything this process does. In adaptive mode
    /// a hard ceiling (the rate itself is found from OSS's throttling answers: no delay until
    /// OSS first throttles, then cut and regrown); in fixed mode the rate.
    #[arg(long, default_value_t = crate::oss::DEFAULT_QPS_CEILING, value_parser = parse_qps)]
    pub oss_qps: f64,

    /// OSS requests allowed at once after an idle period (under the ceiling).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub oss_burst: u32,

    /// adaptive: find the account's limit from throttling answers, under --oss-qps; fixed:
    /// always send at --oss-qps.
    #[arg(long, value_enum, default_value = "adaptive")]
    pub oss_qps_mode: crate::oss::RateMode,
}

impl OssRateArgs {
    /// These settings on a client configuration.
    pub fn apply_to(&self, config: &mut crate::oss::ClientConfig) {
        config.qps = self.oss_qps;
        config.burst = self.oss_burst;
        config.rate_mode = self.oss_qps_mode;
    }
}

fn parse_qps(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(qps) if qps > 0.0 && qps.is_finite() => Ok(qps),
        _ => Err(format!(
            "{text:?} is not a positive number of requests per second"
        )),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Flags of `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Watch only this namespace (repeatable); default: all namespaces.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,

    /// Reconcile only resources matching this label selector (e.g. shard=a).
    #[arg(long, value_name = "SELECTOR")]
    pub label_selector: Option<String>,

    /// How often in-sync buckets are re-read for drift, unless a resource sets spec.resyncInterval.
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    pub resync_interval: Duration,

    /// Reconciles running at once (across all watched namespaces).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Threads that run the controller and its connections. One is enough for the OSS rate
    /// ceiling (about 1.4 ms of CPU per reconcile on a 10,000-object fleet), and costs a sixth
    /// less CPU than two: tasks never hand over between threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: u16,

    /// With deletionPolicy Delete, how long deletion retries a rule removal that fails
    /// transiently (OSS 5xx, throttling) before it retains the rule, warns and lets the
    /// resource go.
    #[arg(long, default_value = "5m", value_parser = parse_timeout)]
    pub deletion_timeout: Duration,

    #[command(flatten)]
    pub rate: OssRateArgs,

    /// Object audits (spec.objectAudit) running at once, each on one bucket, apart from the
    /// --concurrency slots of the rule reconciles.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub audit_concurrency: u16,

    /// The most data-plane requests (ListObjectsV2, HeadObject) per second that all object
    /// audits together make: the ceiling of their own adaptive limiter, apart from the
    /// management calls' --oss-qps.
    #[arg(long, default_value_t = 100.0, value_parser = parse_qps)]
    pub audit_qps: f64,

    /// Object audit requests allowed at once after an idle period.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_burst: u32,

    #[command(flatten)]
    pub kms: KmsArgs,

    /// Where credentials may be sent: `.suffix` entries match by suffix, others exactly
    /// (host or host:port). Comma-separated or repeated.
    #[arg(long, value_delimiter = ',', default_value = ".aliyuncs.com")]
    pub allowed_endpoint_suffixes: Vec<String>,

    /// Use the operator's own credentials (environment or RRSA) for resources without
    /// spec.credentials. Set to false on multi-tenant clusters.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_operator_credentials: bool,

    /// Who may claim which bucket: open (every resource; single-team clusters) or grants (only
    /// what a cluster-scoped BucketEncryptionGrant permits, also for the operator's own
    /// credentials; needs the grant CRD and its ClusterRole rules).
    #[arg(long, value_enum, default_value = "open")]
    pub tenancy: crate::reconcile::grants::Tenancy,

    /// Run the BucketEncryptionPolicy controller (watches the cluster-scoped policies; needs the
    /// policy CRD and its ClusterRole rules). false: BucketEncryptions only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_policies: bool,

    /// Namespace of the Secrets that policies name (defaults to the pod's namespace); policies
    /// never read Secrets anywhere else.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub policy_secret_namespace: String,

    /// Run several replicas: only the holder of a coordination.k8s.io Lease reconciles.
    #[arg(long)]
    pub leader_election: bool,

    /// Namespace of the Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,

    /// Name of the Lease; instances scoped by --namespace or --label-selector need one each.
    /// With --shard-count above 1 each shard elects with `<lease>-shard-<i>-of-<n>`.
    #[arg(long, default_value = "oss-encryption-operator")]
    pub leader_election_lease: String,

    /// Name of the Lease whose holder runs the policies (with --leader-election): exactly one
    /// instance of all shards and scopes passes them, so --enable-policies can stay on in each.
    #[arg(long, default_value = "oss-encryption-operator-policies")]
    pub policy_lease: String,

    /// This instance's shard, 0-based (with --shard-count).
    #[arg(long, default_value_t = 0)]
    pub shard_index: u32,

    /// Split the buckets into this many shards by a stable hash of the bucket name: every
    /// resource naming a bucket is reconciled by the one shard that bucket hashes to.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shard_count: u32,

    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,

    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,

    /// The reportingInstance of events (defaults to the pod name).
    #[arg(long, env = "POD_NAME", default_value = "oss-encryption-operator")]
    pub instance: String,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    match crate::api::parse_duration(text) {
        Some(d) if d < crate::api::MIN_RESYNC => Err("must be at least 30s".into()),
        Some(d) if d > crate::api::MAX_RESYNC => Err("must be at most 24h".into()),
        Some(d) => Ok(d),
        None => Err(format!("{text:?} is not a duration such as 90s, 5m or 1h")),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match crate::api::parse_duration(text) {
        Some(d) if d <= Duration::from_secs(24 * 3600) => Ok(d),
        Some(_) => Err("must be at most 24h".into()),
        None => Err(format!("{text:?} is not a duration such as 90s, 5m or 1h")),
    }
}
