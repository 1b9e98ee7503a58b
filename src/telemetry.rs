//! Logs (text or JSON), Prometheus metrics, and the `/metrics`, `/healthz`, `/readyz` server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::oss::{Observer, Operation};

pub mod kube_api;
pub use kube_api::instrumented_client;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global tracing subscriber (`RUST_LOG` filters, else `default_filter`). Logs go
/// to stderr.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OssLabels {
    api: String,
    outcome: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
    compliance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KubeLabels {
    verb: String,
    resource: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KmsLabels {
    outcome: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabels {
    /// Not `namespace`: Prometheus' target label of the operator's pod would clash with it.
    resource_namespace: String,
    resource_name: String,
    bucket: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// How an object audit ended (`object_audits_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// No examined object is below the rule.
    Clean,
    /// Some examined objects are below the rule.
    BelowRule,
    /// Nothing could be examined (listing refused, credentials, ...).
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::BelowRule => "below_rule",
            Self::Failed => "failed",
        }
    }
}

/// A reconcile waiting for a slot (see [`Metrics::queued`]); leaves the queue when dropped.
pub struct Queued(Gauge);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_duration: Histogram,
    oss_requests: Family<OssLabels, Counter>,
    oss_request_duration: Family<ApiLabel, Histogram>,
    kms_requests: Family<KmsLabels, Counter>,
    kube_requests: Family<KubeLabels, Counter>,
    policy_buckets: Family<PolicyLabels, Gauge>,
    queue_depth: Gauge,
    drift_corrections: Counter,
    objects: Family<ReadyLabel, Gauge>,
    leader: Gauge,
    not_permitted: Gauge,
    audit_below_rule: Family<AuditLabels, Gauge>,
    audit_examined: Family<AuditLabels, Gauge>,
    object_audits: Family<OutcomeLabel, Counter>,
    oss_throttles: Counter,
    oss_rate: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The client whose current rate the gauge reports at scrape time.
    rate_source: std::sync::Mutex<Option<crate::oss::OssClient>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("oss_encryption_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (ok or an error label)",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let oss_requests = Family::<OssLabels, Counter>::default();
        registry.register(
            "oss_requests",
            "OSS request attempts by API, outcome (HTTP status, timeout, connection, credentials) and OSS error code",
            oss_requests.clone(),
        );
        let oss_request_duration = Family::<ApiLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "oss_request_duration_seconds",
            "Duration of one OSS request attempt",
            oss_request_duration.clone(),
        );
        let kms_requests = Family::<KmsLabels, Counter>::default();
        registry.register(
            "kms_requests",
            "KMS DescribeKey attempts of the key pre-flight by outcome (HTTP status, timeout, connection, credentials) and KMS error code",
            kms_requests.clone(),
        );
        let kube_requests = Family::<KubeLabels, Counter>::default();
        registry.register(
            "kubernetes_api_requests",
            "Kubernetes API requests by verb, resource (with subresource) and HTTP status code (error: no answer)",
            kube_requests.clone(),
        );
        // A gauge fixed at 1, the classic `_build_info` form: Prometheus' text format (and so
        // promtool) has no OpenMetrics `info` type.
        let build_info = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("BUILD_COMMIT")),
            ])
            .set(1);
        registry.register(
            "build_info",
            "The operator's version and the commit it was built from (always 1)",
            build_info,
        );
        let queue_depth = Gauge::default();
        registry.register(
            "reconcile_queue_depth",
            "Reconciles due and waiting for one of the --concurrency slots",
            queue_depth.clone(),
        );
        let policy_buckets = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "policy_buckets",
            "Buckets per BucketEncryptionPolicy by compliance (compliant, non_compliant, managed_by_resource, claimed_by_policy, excluded, error) at its last pass",
            policy_buckets.clone(),
        );
        let drift_corrections = Counter::default();
        registry.register(
            "drift_corrections",
            "Rules found changed behind the operator's back and put right",
            drift_corrections.clone(),
        );
        let objects = Family::<ReadyLabel, Gauge>::default();
        registry.register(
            "objects",
            "BucketEncryption objects by Ready status",
            objects.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance reconciles (is the leader)",
            leader.clone(),
        );
        let not_permitted = Gauge::default();
        registry.register(
            "not_permitted_resources",
            "BucketEncryptions that no BucketEncryptionGrant permits (--tenancy grants): they make no OSS request",
            not_permitted.clone(),
        );
        let audit_below_rule = Family::<AuditLabels, Gauge>::default();
        registry.register(
            "audit_objects_below_rule",
            "Objects below the rule among those the last object audit (spec.objectAudit) examined, per resource",
            audit_below_rule.clone(),
        );
        let audit_examined = Family::<AuditLabels, Gauge>::default();
        registry.register(
            "audit_objects_examined",
            "Objects the last object audit (spec.objectAudit) examined, per resource",
            audit_examined.clone(),
        );
        let object_audits = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "object_audits",
            "Object audits by outcome (clean, below_rule, failed)",
            object_audits.clone(),
        );
        let oss_throttles = Counter::default();
        registry.register(
            "oss_throttles",
            "OSS throttling answers (503 QPS codes, 429): each one cuts the adaptive request rate",
            oss_throttles.clone(),
        );
        let oss_rate = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "oss_request_rate_limit",
            "The OSS request rate in force (requests per second): the adaptive rate after a throttle, else the --oss-qps ceiling",
            oss_rate.clone(),
        );
        Self {
            registry,
            oss_throttles,
            oss_rate,
            rate_source: std::sync::Mutex::new(None),
            reconciles,
            reconcile_duration,
            oss_requests,
            oss_request_duration,
            kms_requests,
            kube_requests,
            policy_buckets,
            queue_depth,
            drift_corrections,
            objects,
            leader,
            not_permitted,
            audit_below_rule,
            audit_examined,
            object_audits,
        }
    }

    /// Records one object audit of a resource: its figures and its outcome.
    pub fn object_audited(
        &self,
        namespace: &str,
        name: &str,
        bucket: &str,
        status: &crate::api::ObjectAuditStatus,
        outcome: AuditOutcome,
    ) {
        let labels = AuditLabels {
            resource_namespace: namespace.to_owned(),
            resource_name: name.to_owned(),
            bucket: bucket.to_owned(),
        };
        self.audit_below_rule
            .get_or_create(&labels)
            .set(status.below_rule);
        self.audit_examined.get_or_create(&labels).set(status.examined);
        self.object_audits
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
    }

    /// Drops a resource's audit series (it was deleted or stopped asking for audits).
    pub fn forget_object_audit(&self, namespace: &str, name: &str, bucket: &str) {
        let labels = AuditLabels {
            resource_namespace: namespace.to_owned(),
            resource_name: name.to_owned(),
            bucket: bucket.to_owned(),
        };
        self.audit_below_rule.remove(&labels);
        self.audit_examined.remove(&labels);
    }

    /// Counts one Kubernetes API request (see [`kube_api`]).
    pub fn kube_request(&self, verb: &str, resource: &str, code: &str) {
        self.kube_requests
            .get_or_create(&KubeLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// Records one reconcile.
    pub fn reconciled(&self, result: &str, duration: Duration) {
        self.reconciles
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
        self.reconcile_duration.observe(duration.as_secs_f64());
    }

    pub fn drift_corrected(&self) {
        self.drift_corrections.inc();
    }

    /// Sets the not-permitted resources gauge (tenancy grants).
    pub fn set_not_permitted(&self, count: usize) {
        self.not_permitted.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Replaces the objects-by-Ready gauges (computed from the caches at scrape time).
    pub fn set_objects(&self, counts: &BTreeMap<String, i64>) {
        for status in ["True", "False", "Unknown"] {
            self.objects
                .get_or_create(&ReadyLabel {
                    status: status.into(),
                })
                .set(counts.get(status).copied().unwrap_or(0));
        }
    }

    /// Reports `client`'s current request rate in the rate gauge (read at scrape time).
    pub fn track_rate(&self, client: &crate::oss::OssClient) {
        *self.rate_source.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
    }

    /// An observer for the OSS client that feeds the OSS metrics.
    pub fn oss_observer(self: &Arc<Self>) -> Observer {
        let metrics = self.clone();
        Observer(Arc::new(
            move |op: Operation, outcome: &str, code: &str, duration: Duration| {
                metrics
                    .oss_requests
                    .get_or_create(&OssLabels {
                        api: op.as_str().to_owned(),
                        outcome: outcome.to_owned(),
                        code: code.to_owned(),
                    })
                    .inc();
                if crate::oss::error::is_throttling(outcome.parse().unwrap_or(0), code) {
                    metrics.oss_throttles.inc();
                }
                metrics
                    .oss_request_duration
                    .get_or_create(&ApiLabel {
                        api: op.as_str().to_owned(),
                    })
                    .observe(duration.as_secs_f64());
            },
        ))
    }

    /// Counts a reconcile as waiting for a concurrency slot until the guard drops.
    pub fn queued(&self) -> Queued {
        self.queue_depth.inc();
        Queued(self.queue_depth.clone())
    }

    /// A policy's bucket counts at its last pass.
    pub fn set_policy_buckets(&self, policy: &str, counts: &crate::api::policy::BucketCounts) {
        for (compliance, value) in [
            ("compliant", counts.compliant),
            ("non_compliant", counts.non_compliant),
            ("managed_by_resource", counts.managed_by_resource),
            ("claimed_by_policy", counts.claimed_by_policy),
            ("excluded", counts.excluded),
            ("error", counts.errors),
        ] {
            self.policy_buckets
                .get_or_create(&PolicyLabels {
                    policy: policy.to_owned(),
                    compliance: compliance.to_owned(),
                })
                .set(value);
        }
    }

    /// An observer for the KMS client that feeds `kms_requests_total`.
    pub fn kms_observer(self: &Arc<Self>) -> crate::kms::KmsObserver {
        let metrics = self.clone();
        crate::kms::KmsObserver(Arc::new(move |outcome: &str, code: &str| {
            metrics
                .kms_requests
                .get_or_create(&KmsLabels {
                    outcome: outcome.to_owned(),
                    code: code.to_owned(),
                })
                .inc();
        }))
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        if let Some(client) = self
            .rate_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            self.oss_rate.set(client.current_rate());
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// What the HTTP endpoints read.
#[derive(Clone)]
pub struct Probe {
    pub metrics: Arc<Metrics>,
    /// True once the controller's caches are synced.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Counts of objects by Ready status, from the caches.
    pub objects: Arc<dyn Fn() -> BTreeMap<String, i64> + Send + Sync>,
}

async fn metrics(State(probe): State<Probe>) -> impl IntoResponse {
    probe.metrics.set_objects(&(probe.objects)());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        probe.metrics.encode(),
    )
}

async fn readyz(State(probe): State<Probe>) -> (StatusCode, &'static str) {
    if (probe.ready)() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

/// Serves the router on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    probe: Probe,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(probe))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The router for `/metrics`, `/healthz` (alive) and `/readyz` (caches synced).
pub fn router(probe: Probe) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_and_the_rate_in_force_are_exposed() {
        crate::install_tls_provider();
        let metrics = Arc::new(Metrics::new());
        let client = crate::oss::OssClient::new(crate::oss::ClientConfig {
            qps: 250.0,
            ..crate::oss::ClientConfig::default()
        })
        .unwrap();
        metrics.track_rate(&client);
        for (outcome, code) in [
            ("503", "MetaOperationQpsLimitExceeded"),
            ("503", "InternalError"),
            ("500", "InternalError"),
            ("429", ""),
        ] {
            (metrics.oss_observer().0)(Operation::GetBucketEncryption, outcome, code, Duration::ZERO);
        }
        let text = metrics.encode();
        assert!(
            text.lines()
                .any(|l| l == "oss_encryption_operator_oss_throttles_total 2"),
            "a QPS-limit 503 and a 429 are throttles, other errors not:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "oss_encryption_operator_oss_request_rate_limit 250.0"),
            "no throttle seen by the client yet: the ceiling\n{text}"
        );
    }

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconciled("ok", Duration::from_millis(20));
        metrics.drift_corrected();
        metrics.set_leader(true);
        (metrics.oss_observer().0)(
            Operation::GetBucketEncryption,
            "200",
            "",
            Duration::from_millis(3),
        );
        (metrics.oss_observer().0)(
            Operation::PutBucketEncryption,
            "403",
            "AccessDenied",
            Duration::from_millis(3),
        );
        (metrics.kms_observer().0)("404", "Forbidden.KeyNotFound");
        metrics.set_policy_buckets(
            "prod",
            &crate::api::policy::BucketCounts {
                compliant: 7,
                non_compliant: 2,
                ..Default::default()
            },
        );
        metrics.set_objects(&BTreeMap::from([("True".to_owned(), 3)]));
        let waiting = [metrics.queued(), metrics.queued()];
        drop(metrics.queued());
        let text = metrics.encode();
        drop(waiting);
        assert!(
            metrics
                .encode()
                .contains("oss_encryption_operator_reconcile_queue_depth 0")
        );
        for line in [
            "oss_encryption_operator_reconciles_total{result=\"ok\"} 1",
            "oss_encryption_operator_oss_requests_total{api=\"GetBucketEncryption\",outcome=\"200\",code=\"\"} 1",
            "oss_encryption_operator_oss_requests_total{api=\"PutBucketEncryption\",outcome=\"403\",code=\"AccessDenied\"} 1",
            "oss_encryption_operator_drift_corrections_total 1",
            "oss_encryption_operator_kms_requests_total{outcome=\"404\",code=\"Forbidden.KeyNotFound\"} 1",
            "oss_encryption_operator_policy_buckets{policy=\"prod\",compliance=\"compliant\"} 7",
            "oss_encryption_operator_policy_buckets{policy=\"prod\",compliance=\"non_compliant\"} 2",
            "oss_encryption_operator_objects{status=\"True\"} 3",
            "oss_encryption_operator_objects{status=\"False\"} 0",
            "oss_encryption_operator_leader 1",
            "oss_encryption_operator_reconcile_queue_depth 2",
            concat!(
                "oss_encryption_operator_build_info{version=\"",
                env!("CARGO_PKG_VERSION"),
                "\",commit=\"",
                env!("BUILD_COMMIT"),
                "\"} 1"
            ),
            "oss_encryption_operator_reconcile_duration_seconds_count 1",
            "oss_encryption_operator_oss_request_duration_seconds_count{api=\"GetBucketEncryption\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
