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

    pub fn target(&self, bucket: &str) -> BucketTarget {
        BucketTarget::new(bucket, REGION)
            .expect("valid bucket")
            .with_endpoint(self.emulator.endpoint())
    }
}
