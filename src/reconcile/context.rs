//! What every reconcile shares: clients, recorder, metrics, settings, the caches, the claims
//! index and the per-object failure counts. The bottom floor of `reconcile/`: of its siblings it
//! imports only the claims index (which imports only `ownership`, `grants`, `guard` and `shard`),
//! `grants`, `guard`, `secret_reads` and `shard`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::sync::Semaphore;

use super::claims::ClaimsIndex;
use super::events::EventRecorder;
use super::grants::Tenancy;
use super::resync::{Resyncs, Target};
use super::secret_reads::SecretReads;
use super::shard::Shard;
use crate::api::BucketEncryption;
use crate::kms::KeyChecker;
use crate::oss::objects::ObjectClient;
use crate::oss::{CredentialsProvider, OssClient};
use crate::telemetry::Metrics;

/// The field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "oss-encryption-operator";
/// The field manager of the object audit's `status.objects` (apart from the rule's status, so
/// neither apply erases the other's fields).
pub const AUDIT_FIELD_MANAGER: &str = "oss-encryption-operator-audit";

/// Guarded objects: one that does not deserialise still reaches reconcile (and gets InvalidSpec).
pub type Guarded = super::guard::Guard<BucketEncryption>;

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    /// Resync interval of objects that do not set one.
    pub resync_interval: Duration,
    /// Reconciles running at once, across all watched namespaces.
    pub concurrency: u16,
    /// The `reportingInstance` of events (pod name).
    pub instance: String,
    /// How long deletion keeps retrying a rule removal that fails transiently before it
    /// retains the rule and releases the finalizer.
    pub deletion_timeout: Duration,
    /// The KMS key pre-flight; `None` when switched off (`--kms-preflight=false`).
    pub key_checker: Option<KeyChecker>,
    /// Run the BucketEncryptionPolicy controller (cluster-scoped; `--enable-policies`).
    pub policies: bool,
    /// Where policies' Secrets are read: the operator's own namespace.
    pub policy_secret_namespace: String,
    /// The buckets this instance reconciles (`--shard-index`/`--shard-count`).
    pub shard: Shard,
    /// The Lease that makes exactly one instance run policies (with leader election); `None`
    /// without leader election, when policies run on shard 0.
    pub policy_election: Option<crate::leader::Election>,
    /// Whether a resource needs a BucketEncryptionGrant (`--tenancy`, DESIGN.md 3.5).
    pub tenancy: Tenancy,
    /// The object audit worker (`spec.objectAudit`).
    pub object_audits: AuditSettings,
}

/// The object audit worker's bounds (`--audit-concurrency`, `--audit-qps`, `--audit-burst`).
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// Audits running at once (each one bucket), apart from the reconciles' slots.
    pub concurrency: u16,
    /// The ceiling of the data-plane limiter (ListObjectsV2 and HeadObject per second) that
    /// every audit shares; adaptive below it, apart from the management API's limiter.
    pub qps: f64,
    /// Data-plane requests allowed at once after an idle period.
    pub burst: u32,
    /// How often the worker looks for audits that are due.
    pub scan_period: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            concurrency: 2,
            qps: 100.0,
            burst: 20,
            scan_period: Duration::from_secs(10),
        }
    }
}

impl Settings {
    /// Whether this instance's caches hold every BucketEncryption of the cluster (no namespace,
    /// label or shard scoping), so its claims index is the cluster's.
    pub fn sees_every_resource(&self) -> bool {
        self.namespaces.is_empty() && self.label_selector.is_none() && !self.shard.is_sharded()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            label_selector: None,
            resync_interval: Duration::from_secs(300),
            concurrency: 8,
            instance: FIELD_MANAGER.into(),
            deletion_timeout: Duration::from_secs(300),
            key_checker: None,
            policies: true,
            policy_secret_namespace: "default".into(),
            shard: Shard::ALL,
            policy_election: None,
            tenancy: Tenancy::Open,
            object_audits: AuditSettings::default(),
        }
    }
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: kube::Client,
    pub oss: OssClient,
    /// The data-plane client of the object audits (ListObjectsV2, HeadObject): its own limiter,
    /// made from `oss` with `settings.object_audits`' ceiling.
    pub objects: ObjectClient,
    /// The operator's own credentials; `None` when absent or forbidden (`--allow-operator-credentials=false`).
    pub operator_credentials: Option<CredentialsProvider>,
    pub recorder: EventRecorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The caches of every watched namespace.
    pub stores: Vec<Store<Guarded>>,
    /// Who claims which bucket, across every cache (one source per store, in order): the one
    /// place ownership is read from.
    pub claims: Arc<ClaimsIndex>,
    /// Bounds reconciles across all controllers to `settings.concurrency`.
    pub permits: Semaphore,
    /// Secret reads, shared by the reconciles that need one Secret within a second.
    pub secrets: SecretReads,
    /// When each resource in sync is next read back (kube's scheduler keeps only backoffs).
    pub resyncs: Resyncs,
    /// Consecutive failures per object uid, for backoff; cleared on success and on deletion.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        oss: OssClient,
        operator_credentials: Option<CredentialsProvider>,
        recorder: EventRecorder,
        settings: Settings,
        metrics: Arc<Metrics>,
        stores: Vec<Store<Guarded>>,
    ) -> Self {
        let concurrency = usize::from(settings.concurrency.max(1));
        let permits = Semaphore::new(concurrency);
        let claims = Arc::new(ClaimsIndex::new(stores.len(), settings.tenancy).with_shard(settings.shard));
        let objects = oss.data_plane(settings.object_audits.qps, settings.object_audits.burst);
        Self {
            client,
            objects,
            oss,
            operator_credentials,
            recorder,
            settings,
            metrics,
            claims,
            stores,
            permits,
            secrets: SecretReads::default(),
            // Twice the reconciles that run at once: the controller is never idle for want of
            // a trigger, and holds few.
            resyncs: Resyncs::with_window(2 * concurrency),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The resync timer's key for `object`: its controller (the watched namespace it is in, in
    /// order; the one cluster-wide watch is 0) and its namespace and name.
    pub fn resync_target(&self, object: &Guarded) -> Target {
        let namespace = object.namespace().unwrap_or_default();
        let source = self
            .settings
            .namespaces
            .iter()
            .position(|watched| *watched == namespace)
            .unwrap_or(0);
        Target {
            source,
            namespace: namespace.into(),
            name: object.name_any().into(),
        }
    }

    /// Objects in all caches.
    pub fn object_count(&self) -> usize {
        self.stores.iter().map(Store::len).sum()
    }

    /// Counts one more consecutive failure of the object; returns the count.
    pub fn record_failure(&self, uid: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(uid.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Forgets the object's failures (after a success, or once it is gone).
    pub fn forget_failures(&self, uid: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }
}
