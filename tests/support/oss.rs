//! An in-process OSS emulator with one access key and a client allowed to reach it.

use std::time::Duration;

use oss_encryption_operator::emulator::{Emulator, EmulatorConfig};
use oss_encryption_operator::oss::{
    BucketTarget, ClientConfig, Credentials, CredentialsProvider, OssClient, RetryPolicy,
};

pub const ACCESS_KEY_ID: &str = "LTAI5tTestAccessKeyId";
pub const ACCESS_KEY_SECRET: &str = "TestAccessKeySecret0123456789abc";
pub const REGION: &str = "cn-hangzhou";

pub struct TestOss {
    pub emulator: Emulator,
    pub credentials: CredentialsProvider,
}

/// Retries quick enough for tests (the policy shape is the production one).
pub fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        throttled_max_attempts: max_attempts,
        base_delay: Duration::from_millis(5),
        throttled_base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

impl TestOss {
    /// An emulator with the test key and the given buckets (all in `REGION`).
    pub async fn start(buckets: &[&str]) -> Self {
        Self::start_with(EmulatorConfig {
            access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
            buckets: buckets
                .iter()
                .map(|b| (b.to_string(), REGION.to_string()))
                .collect(),
            ..EmulatorConfig::default()
        })
        .await
    }

    pub async fn start_with(config: EmulatorConfig) -> Self {
        Self {
            emulator: Emulator::start(config).await.expect("emulator starts"),
            credentials: Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET).into(),
        }
    }

    /// Client settings that allow the emulator's address, with fast retries.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig {
            retry: fast_retries(3),
            qps: 1000.0,
            burst: 1000,
            ..ClientConfig::default()
        };
        config.allow_list.allow(self.emulator.endpoint().authority());
        config
    }

    pub fn client(&self) -> OssClient {
        OssClient::new(self.config()).expect("client builds")
    }

    /// Writes a credentials file (`--credentials-file`) with the test key into `dir`.
    pub fn write_credentials(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("credentials.yaml");
        std::fs::write(
            &path,
            format!("accessKeyId: {ACCESS_KEY_ID}\naccessKeySecret: {ACCESS_KEY_SECRET}\n"),
        )
        .unwrap();
        path
    }

    /// Runs the operator binary with `args`, every request sent to this emulator (`--endpoint`,
    /// allowed by `--allowed-endpoint-suffixes`), off the runtime's thread (which serves the
    /// emulator): (exit code, stdout, stderr).
    pub async fn cli(&self, args: Vec<String>) -> (i32, String, String) {
        let endpoint = self.emulator.url();
        let authority = self.emulator.endpoint().authority();
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
                .args(&args)
                .args(["--endpoint", &endpoint, "--allowed-endpoint-suffixes", &authority])
                .output()
                .unwrap();
            (
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    }

    /// PutBucketEncryption and DeleteBucketEncryption requests answered so far.
    pub fn writes(&self) -> u64 {
        let state = self.emulator.state();
        state.total("PutBucketEncryption") + state.total("DeleteBucketEncryption")
    }

    pub fn target(&self, bucket: &str) -> BucketTarget {
        BucketTarget::new(bucket, REGION)
            .expect("valid bucket")
            .with_endpoint(self.emulator.endpoint())
    }
}
