//! Everything that speaks KMS (for the key pre-flight). Knows nothing of Kubernetes.
//!
//! [`KmsClient::describe_key`] asks KMS `DescribeKey` over HTTPS (ACS3-HMAC-SHA256, STS tokens),
//! under the same ground rules as the OSS client: endpoint allow-list, no redirects, capped
//! bodies, retries with backoff, and a limiter of its own. [`KeyChecker`] caches the answers per
//! (identity, region, key) for a short time and turns them into a [`Verdict`].

pub mod checker;
pub mod error;
pub mod key;
pub mod request;
pub mod sign;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use checker::{KeyChecker, Verdict};
pub use error::{KmsError, KmsErrorKind, ServiceError};
pub use key::{KeyMetadata, KeyProblem};

use crate::oss::{
    AllowList, Classification, CredentialsProvider, Endpoint, RateLimiter, RateMode, Reply, RetryPolicy,
    transport,
};

/// Which KMS gateway of a region: public (`kms.<region>.aliyuncs.com`) or VPC (`kms-vpc.…`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    #[default]
    Public,
    Vpc,
}

/// Told about every KMS attempt: its outcome (HTTP status such as `"200"`, or `"timeout"`,
/// `"connection"`, `"credentials"`) and KMS's error code (empty on success). For metrics.
#[derive(Clone)]
pub struct KmsObserver(pub Arc<ObserveFn>);

/// The function a [`KmsObserver`] calls: outcome, code.
pub type ObserveFn = dyn Fn(&str, &str) + Send + Sync;

impl std::fmt::Debug for KmsObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KmsObserver")
    }
}

/// The default ceiling on KMS requests per second. A ceiling only: the limiter is adaptive below
/// it and settles at what the account accepts when KMS throttles (the shared gateway documents
/// 50/s per account and region for key queries such as DescribeKey; a KMS instance's dedicated
/// gateway allows more). A ceiling at the shared quota would make it the bound of every run that
/// names many keys, even on accounts that allow more.
pub const DEFAULT_QPS_CEILING: f64 = 1000.0;

/// Client settings. `Default` is what the operator uses unless told otherwise.
#[derive(Clone, Debug)]
pub struct KmsConfig {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// Requests per second (a ceiling; adaptive below it when KMS throttles).
    pub qps: f64,
    pub burst: u32,
    pub network: Network,
    /// Send every call here instead of the region's gateway (an emulator, a private gateway).
    pub endpoint: Option<Endpoint>,
    /// Endpoints the client may send credentials to.
    pub allow_list: AllowList,
    /// Host names sent to a fixed address instead of resolving them (tests).
    pub resolve: Vec<(String, SocketAddr)>,
    /// Sees every attempt (metrics).
    pub observer: Option<KmsObserver>,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            qps: DEFAULT_QPS_CEILING,
            burst: 10,
            network: Network::Public,
            endpoint: None,
            allow_list: AllowList::default(),
            resolve: Vec::new(),
            observer: None,
        }
    }
}

/// Client for KMS `DescribeKey`. Cheap to clone; clones share the limiter.
#[derive(Clone, Debug)]
pub struct KmsClient {
    http: reqwest::Client,
    config: Arc<KmsConfig>,
    limiter: Arc<RateLimiter>,
    /// Server time minus local time per endpoint, learned from a clock-skew answer's `Date`.
    clocks: Arc<crate::oss::clock::ClockOffsets>,
}

/// The codes KMS answers a request signed with a time outside its 15-minute window with.
const CLOCK_SKEW_CODES: &[&str] = &["InvalidTimeStamp.Expired", "IllegalTimestamp"];

impl KmsClient {
    /// Builds the client (rustls with ring, redirects off).
    pub fn new(config: KmsConfig) -> Result<Self, reqwest::Error> {
        crate::install_tls_provider();
        let mut builder = transport::client_builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(50));
        for (host, addr) in &config.resolve {
            builder = builder.resolve(host, *addr);
        }
        Ok(Self {
            http: builder.build()?,
            limiter: Arc::new(RateLimiter::new(config.qps, config.burst, RateMode::Adaptive)),
            config: Arc::new(config),
            clocks: Arc::default(),
        })
    }

    pub fn config(&self) -> &KmsConfig {
        &self.config
    }

    /// The gateway for a region: the override, else `https://kms[-vpc].<region>.aliyuncs.com`.
    pub fn endpoint(&self, region: &str) -> Result<Endpoint, crate::oss::EndpointError> {
        if let Some(endpoint) = &self.config.endpoint {
            return Ok(endpoint.clone());
        }
        crate::oss::endpoint::validate_region(region)?;
        let prefix = match self.config.network {
            Network::Public => "kms",
            Network::Vpc => "kms-vpc",
        };
        Endpoint::parse(&format!("https://{prefix}.{region}.aliyuncs.com"))
    }

    /// `DescribeKey` of a key id, alias (`alias/…`) or ARN in `region`, retried like OSS calls.
    pub async fn describe_key(
        &self,
        region: &str,
        key_id: &str,
        credentials: &CredentialsProvider,
    ) -> Result<Reply<KeyMetadata>, KmsError> {
        let fail = |attempts, kind| KmsError {
            key_id: key_id.to_owned(),
            region: region.to_owned(),
            attempts,
            kind,
        };
        let endpoint = self.endpoint(region).map_err(|e| fail(0, e.into()))?;
        self.config
            .allow_list
            .check(&endpoint)
            .map_err(|e| fail(0, e.into()))?;
        let retry = &self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.attempt(&endpoint, key_id, credentials).await;
            if let Some(observer) = &self.config.observer {
                let (outcome, code) = match &result {
                    Ok(_) => ("200".to_owned(), ""),
                    Err(KmsErrorKind::Service(e)) => (e.status.to_string(), e.code.as_str()),
                    Err(KmsErrorKind::Timeout(_)) => ("timeout".to_owned(), ""),
                    Err(KmsErrorKind::Credentials(_)) => ("credentials".to_owned(), ""),
                    Err(_) => ("connection".to_owned(), ""),
                };
                (observer.0)(&outcome, code);
            }
            if let Err(KmsErrorKind::Service(e)) = &result {
                self.limiter
                    .record(e.classification() == Classification::Throttled);
            } else if result.is_ok() {
                self.limiter.record(false);
            }
            let error = match result {
                Ok(mut reply) => {
                    reply.attempts = attempt;
                    return Ok(reply);
                }
                Err(kind) => fail(attempt, kind),
            };
            let classification = error.classification();
            let limit = match classification {
                Classification::Throttled => retry.throttled_max_attempts.max(retry.max_attempts),
                _ => retry.max_attempts.max(1),
            };
            tracing::debug!(key = key_id, region, attempt, ?classification, error = %error.kind, "KMS attempt failed");
            // A skewed clock is corrected from the answer's Date (in `attempt`) and retried once at once.
            let skewed = matches!(&error.kind, KmsErrorKind::Service(e) if CLOCK_SKEW_CODES.contains(&e.code.as_str()));
            if skewed && attempt == 1 {
                continue;
            }
            if classification == Classification::Terminal || attempt >= limit {
                return Err(error);
            }
            // The backoff, or longer when KMS said how long to stay away.
            let backoff = retry.delay(attempt, classification, fastrand::f64());
            tokio::time::sleep(backoff.max(error.retry_after_wait().unwrap_or_default())).await;
        }
    }

    async fn attempt(
        &self,
        endpoint: &Endpoint,
        key_id: &str,
        provider: &CredentialsProvider,
    ) -> Result<Reply<KeyMetadata>, KmsErrorKind> {
        let credentials = provider.credentials().await?;
        self.limiter.acquire().await;
        let base = format!("{endpoint}/");
        let url = reqwest::Url::parse(&base).map_err(|e| KmsErrorKind::Connection(e.to_string()))?;
        // Sign the Host exactly as it goes out (the URL drops a default port).
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let nonce = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let date = self
            .clocks
            .now_for(&endpoint.authority())
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let signed = request::describe_key(&request::Inputs {
            credentials: &credentials,
            host: &host,
            key_id,
            date: &date,
            nonce: &nonce,
            user_agent: concat!("oss-encryption-operator/", env!("CARGO_PKG_VERSION")),
        });
        let mut http = self
            .http
            .post(format!("{base}?{}", signed.query_string()))
            .timeout(self.config.request_timeout)
            .header("content-length", "0");
        for (name, value) in signed.headers.iter().filter(|(n, _)| n != "host") {
            http = http.header(name, value);
        }
        let response = http.send().await.map_err(|e| self.transport_error(&e))?;
        if let Some((status, location)) = transport::redirect(&response) {
            return Err(KmsErrorKind::Redirect { status, location });
        }
        let status = response.status().as_u16();
        let retry_after = response.headers().get("x-acs-retry-after");
        let retry_after_wait = retry_after
            .and_then(|v| v.to_str().ok())
            .and_then(error::parse_retry_after);
        let retry_after = retry_after.is_some();
        let server_date = response
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::oss::sign::parse_http_date);
        let header_request_id = response
            .headers()
            .get("x-acs-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = match transport::read_body(response, transport::BODY_LIMIT).await {
            Ok(body) => body,
            Err(transport::BodyError::Transport(e)) => return Err(self.transport_error(&e)),
            Err(transport::BodyError::TooLarge { limit }) => {
                return Err(KmsErrorKind::BodyTooLarge {
                    status,
                    request_id: header_request_id,
                    limit,
                });
            }
        };
        if !(200..300).contains(&status) {
            let mut error = ServiceError::from_response(status, &body, retry_after);
            error.retry_after_wait = retry_after_wait;
            if CLOCK_SKEW_CODES.contains(&error.code.as_str())
                && let Some(server) = server_date
            {
                match self.clocks.learn(&endpoint.authority(), server) {
                    Ok(offset) => tracing::warn!(
                        endpoint = %endpoint.authority(),
                        offset_ms = offset.as_millis(),
                        "local clock differs from KMS; correcting signatures for this endpoint"
                    ),
                    Err(skew) => {
                        if error.request_id.is_empty() {
                            error.request_id = header_request_id;
                        }
                        return Err(KmsErrorKind::ClockSkew { skew, service: error });
                    }
                }
            }
            if error.request_id.is_empty() {
                error.request_id = header_request_id;
            }
            return Err(KmsErrorKind::Service(error));
        }
        let answer: key::DescribeKeyResponse =
            serde_json::from_slice(&body).map_err(|e| KmsErrorKind::BadResponse {
                status,
                request_id: header_request_id.clone(),
                detail: e.to_string(),
            })?;
        Ok(Reply {
            value: answer.key_metadata,
            request_id: if answer.request_id.is_empty() {
                header_request_id
            } else {
                answer.request_id
            },
            attempts: 0,
        })
    }

    fn transport_error(&self, error: &reqwest::Error) -> KmsErrorKind {
        if error.is_timeout() {
            KmsErrorKind::Timeout(self.config.request_timeout)
        } else {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            KmsErrorKind::Connection(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_region_and_network() {
        let client = KmsClient::new(KmsConfig::default()).unwrap();
        assert_eq!(
            client.endpoint("cn-hangzhou").unwrap().to_string(),
            "https://kms.cn-hangzhou.aliyuncs.com"
        );
        assert!(client.endpoint("CN/evil").is_err());
        let vpc = KmsClient::new(KmsConfig {
            network: Network::Vpc,
            ..KmsConfig::default()
        })
        .unwrap();
        assert_eq!(
            vpc.endpoint("ap-southeast-1").unwrap().host(),
            "kms-vpc.ap-southeast-1.aliyuncs.com"
        );
        let fixed = KmsClient::new(KmsConfig {
            endpoint: Some(Endpoint::parse("http://127.0.0.1:18443").unwrap()),
            ..KmsConfig::default()
        })
        .unwrap();
        assert_eq!(
            fixed.endpoint("cn-shanghai").unwrap().authority(),
            "127.0.0.1:18443"
        );
    }
}
