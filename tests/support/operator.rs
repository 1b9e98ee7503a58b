//! The real controller, run in-process against the Kubernetes API test server and the OSS
//! emulator, with helpers to create resources and wait for conditions.

use std::time::Duration;

use kube::api::{Api, PostParams};
use oss_encryption_operator::api::BucketEncryption;
use oss_encryption_operator::api::policy::BucketEncryptionPolicy;
use oss_encryption_operator::kms::{KeyChecker, KmsClient, KmsConfig};
use oss_encryption_operator::oss::{ClientConfig, OssClient};
use oss_encryption_operator::reconcile::{self, Health, Settings, Shutdown};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::kube::KubeApiServer;
use super::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, TestOss, fast_retries};

pub const NAMESPACE: &str = "team-a";
pub const SECRET: &str = "oss-credentials";
/// The name (and bucket) of the clock resource, see [`Harness::start_clock`].
pub const CLOCK: &str = "test-clock";

/// A running controller; dropping the harness stops it.
pub struct Harness {
    pub kube: KubeApiServer,
    pub oss: TestOss,
    pub api: Api<BucketEncryption>,
    pub settings: Settings,
    /// The operator's own credentials (none by default: resources name a Secret).
    pub operator_credentials: Option<oss_encryption_operator::oss::CredentialsProvider>,
    /// Metrics the controller and its OSS client report into.
    pub metrics: std::sync::Arc<oss_encryption_operator::telemetry::Metrics>,
    /// What the health endpoints read.
    pub health: Health,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Harness {
    /// Servers, the CRD, the credentials Secret, and a controller with a short resync interval.
    pub async fn start(buckets: &[&str]) -> Self {
        Self::start_with(buckets, |_| {}).await
    }

    pub async fn start_with(buckets: &[&str], tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_inner(buckets, |settings, _| tweak(settings)).await
    }

    /// As `start`, with the KMS key pre-flight on (as in production), asking the emulator's
    /// KMS and caching answers for `ttl`.
    pub async fn start_with_preflight(buckets: &[&str], ttl: Duration) -> Self {
        Self::start_inner(buckets, |settings, oss| {
            let mut config = KmsConfig {
                retry: fast_retries(3),
                endpoint: Some(oss.emulator.endpoint()),
                ..KmsConfig::default()
            };
            config.allow_list.allow(oss.emulator.endpoint().authority());
            let client = KmsClient::new(config).unwrap();
            settings.key_checker = Some(KeyChecker::new(client, ttl));
        })
        .await
    }

    async fn start_inner(buckets: &[&str], tweak: impl FnOnce(&mut Settings, &TestOss)) -> Self {
        oss_encryption_operator::install_tls_provider();
        let kube = KubeApiServer::start().await;
        kube.register_crd(
            &serde_json::to_value(<BucketEncryption as kube::CustomResourceExt>::crd()).unwrap(),
        );
        kube.register_crd(
            &serde_json::to_value(<BucketEncryptionPolicy as kube::CustomResourceExt>::crd()).unwrap(),
        );
        kube.register_crd(
            &serde_json::to_value(
                <oss_encryption_operator::api::grant::BucketEncryptionGrant as kube::CustomResourceExt>::crd(
                ),
            )
            .unwrap(),
        );
        let oss = TestOss::start(buckets).await;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(kube.client(), NAMESPACE);
        let secret = serde_json::from_value(json!({
            "metadata": {"name": SECRET},
            "stringData": {"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
        let mut settings = Settings {
            resync_interval: Duration::from_millis(400),
            ..Settings::default()
        };
        tweak(&mut settings, &oss);
        let api = Api::namespaced(kube.client(), NAMESPACE);
        let mut harness = Self {
            kube,
            oss,
            api,
            settings,
            operator_credentials: None,
            metrics: std::sync::Arc::new(oss_encryption_operator::telemetry::Metrics::new()),
            health: Health::default(),
            stop: None,
            task: None,
        };
        harness.start_controller();
        harness
    }

    /// The OSS client the controller uses: the emulator allowed, quick retries.
    pub fn oss_client(&self) -> OssClient {
        self.oss_client_reporting_to(self.metrics.clone())
    }

    /// As `oss_client`, counting requests in `metrics`.
    pub fn oss_client_reporting_to(
        &self,
        metrics: std::sync::Arc<oss_encryption_operator::telemetry::Metrics>,
    ) -> OssClient {
        let mut config = ClientConfig {
            retry: fast_retries(3),
            qps: 1000.0,
            burst: 1000,
            observer: Some(metrics.oss_observer()),
            ..ClientConfig::default()
        };
        let endpoint = self.oss.emulator.endpoint();
        config.allow_list.allow(endpoint.authority());
        // The same emulator spelt differently, for the one-bucket-one-owner tests.
        config
            .allow_list
            .allow(format!("localhost:{}", endpoint.port().unwrap_or(80)));
        OssClient::new(config).unwrap()
    }

    pub fn start_controller(&mut self) {
        let (stop, task) =
            self.spawn_controller(self.settings.clone(), self.metrics.clone(), self.health.clone());
        self.task = Some(task);
        self.stop = Some(stop);
    }

    /// Another controller instance (a second shard, say) on the same servers, with its own
    /// settings and metrics; it stops when the returned sender is dropped or fires.
    pub fn spawn_controller(
        &self,
        settings: Settings,
        metrics: std::sync::Arc<oss_encryption_operator::telemetry::Metrics>,
        health: Health,
    ) -> (oneshot::Sender<()>, JoinHandle<()>) {
        let (stop, stopped) = oneshot::channel::<()>();
        // Built as `run` builds it: every API request counted in the metrics.
        let client =
            oss_encryption_operator::telemetry::instrumented_client(self.kube.config(), metrics.clone())
                .expect("a client for the test server");
        let oss = self.oss_client_reporting_to(metrics.clone());
        let operator_credentials = self.operator_credentials.clone();
        let task = tokio::spawn(async move {
            reconcile::run(
                client,
                oss,
                operator_credentials,
                settings,
                metrics,
                health,
                async {
                    let _ = stopped.await;
                    Shutdown::Graceful
                },
            )
            .await;
        });
        (stop, task)
    }

    /// Stops the controller and waits for it to finish.
    pub async fn stop_controller(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the controller shuts down")
                .unwrap();
        }
    }

    /// The operator binary, `run --metrics-addr 127.0.0.1:0` plus `args`, against this harness's
    /// API server as the kubeconfig `user:` entry `user` (`{}`, or `{token: NAME}`, which the
    /// server records as who made each access); `configure` sets its environment. Output is
    /// discarded; the process is killed when the returned value is dropped.
    pub fn spawn_operator_binary(
        &self,
        user: &str,
        args: &[String],
        configure: impl FnOnce(&mut std::process::Command),
    ) -> OperatorBinary {
        let kubeconfig = tempfile::tempdir().unwrap();
        let path = kubeconfig.path().join("kubeconfig");
        std::fs::write(&path, self.kube.kubeconfig_yaml_as(user)).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"));
        command
            .args(["run", "--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .env("KUBECONFIG", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        configure(&mut command);
        OperatorBinary {
            process: super::Child(command.spawn().expect("the operator starts")),
            _kubeconfig: kubeconfig,
        }
    }

    /// A resource for `bucket` at the emulator, with the Secret, plus `spec` overrides.
    pub fn resource(&self, name: &str, bucket: &str, spec: Value) -> BucketEncryption {
        let mut document = json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "bucket": bucket, "region": super::oss::REGION, "algorithm": "AES256",
                "endpoint": self.oss.emulator.url(),
                "credentials": {"secretRef": {"name": SECRET}},
            }
        });
        for (k, v) in spec.as_object().unwrap() {
            document["spec"][k] = v.clone();
        }
        serde_json::from_value(document).unwrap()
    }

    pub async fn create(&self, name: &str, bucket: &str, spec: Value) -> BucketEncryption {
        self.api
            .create(&PostParams::default(), &self.resource(name, bucket, spec))
            .await
            .unwrap()
    }

    /// Polls until `check` holds for the object (bounded), returning it.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&BucketEncryption) -> bool,
    ) -> BucketEncryption {
        let mut last = None;
        for _ in 0..400 {
            if let Ok(object) = self.api.get(name).await {
                if check(&object) {
                    return object;
                }
                last = Some(object);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{name} never reached {what}; last seen: {:#?}",
            last.map(|o| o.status)
        );
    }

    /// Waits until Ready has this status and reason.
    pub async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> BucketEncryption {
        self.wait_for(name, &format!("Ready={status}/{reason}"), |o| {
            condition(o, "Ready") == Some((status.into(), reason.into()))
        })
        .await
    }

    /// Waits until this generation is done and OSS holds its rule: Ready=True (`Applied` right
    /// after a write, `InSync` when a reconcile found it so) and InSync=True, both for the
    /// object's current generation.
    pub async fn wait_in_sync(&self, name: &str) -> BucketEncryption {
        self.wait_for(name, "Ready=True and InSync=True", is_in_sync)
            .await
    }

    /// Waits until the bucket has had at least `count` OSS requests (its resyncs mark progress:
    /// once the next one has started, every reconcile before it has finished).
    pub async fn wait_requests(&self, bucket: &str, count: u64) {
        let seen = || {
            self.oss
                .emulator
                .state()
                .bucket_requests()
                .get(bucket)
                .copied()
                .unwrap_or(0)
        };
        for _ in 0..600 {
            if seen() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{bucket} had {} requests, never {count}", seen());
    }

    /// Waits until the object is gone.
    pub async fn wait_gone(&self, name: &str) {
        for _ in 0..400 {
            if self.api.get_opt(name).await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} was never deleted");
    }

    /// Starts the tests' clock: a resource on its own bucket whose resyncs (one OSS GET every
    /// resync interval) mark the controller's progress. Waiting for its ticks instead of
    /// sleeping makes "nothing happened meanwhile" mean something: a stalled controller fails
    /// the wait instead of passing a quiet window.
    pub async fn start_clock(&self) {
        self.oss.emulator.state().create_bucket(CLOCK, super::oss::REGION);
        self.create(CLOCK, CLOCK, json!({})).await;
        self.wait_in_sync(CLOCK).await;
    }

    /// Waits until the clock resource has been resynced `ticks` more times.
    pub async fn ticks(&self, ticks: u64) {
        let requests = || {
            self.oss
                .emulator
                .state()
                .bucket_requests()
                .get(CLOCK)
                .copied()
                .unwrap_or(0)
        };
        let target = requests() + ticks;
        for _ in 0..600 {
            if requests() >= target {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the clock resource was not resynced {ticks} times: the controller stalled");
    }

    /// The rule the emulator holds for a bucket, as (algorithm, key, data) strings.
    pub fn oss_rule(&self, bucket: &str) -> Option<(String, String, String)> {
        self.oss
            .emulator
            .state()
            .bucket(bucket)
            .and_then(|b| b.rule)
            .map(|r| (r.algorithm, r.kms_master_key_id, r.kms_data_encryption))
    }

    /// Events recorded about an object.
    pub async fn event_list(&self, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.kube.client(), NAMESPACE);
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// Events recorded for an object, as (reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        self.event_list(name)
            .await
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Events recorded for an object, as reasons.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events(name)
            .await
            .into_iter()
            .map(|(reason, _)| reason)
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// (status, reason) of a condition.
pub fn condition(object: &BucketEncryption, type_: &str) -> Option<(String, String)> {
    object
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Ready=True and InSync=True for the object's current generation (see `Harness::wait_in_sync`).
pub fn is_in_sync(object: &BucketEncryption) -> bool {
    let current = object
        .status
        .as_ref()
        .is_some_and(|s| s.observed_generation == object.metadata.generation);
    let is_true = |type_| condition(object, type_).is_some_and(|(status, _)| status == "True");
    current && is_true("Ready") && is_true("InSync")
}

/// The message of a condition.
pub fn message(object: &BucketEncryption, type_: &str) -> String {
    object
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// A running operator binary (see `Harness::spawn_operator_binary`).
pub struct OperatorBinary {
    pub process: super::Child,
    _kubeconfig: tempfile::TempDir,
}
