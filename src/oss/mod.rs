//! Everything that speaks OSS. Knows nothing of Kubernetes.
//!
//! [`OssClient`] reads, writes and deletes one bucket's default encryption rule, signing every
//! attempt afresh (V1 or V4, with STS tokens), retrying transient failures with capped
//! exponential backoff and full jitter, correcting clock skew from the server's `Date`, and
//! sharing one token-bucket limiter across all calls. Every outcome carries the OSS request id.

pub mod clock;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod limiter;
pub mod list;
pub mod objects;
pub mod pages;
pub mod rule;
pub mod sign;
pub mod transport;
pub mod xml;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::SignedDuration;
use md5::{Digest, Md5};

pub use credentials::{Credentials, CredentialsError, CredentialsProvider};
pub use endpoint::{AllowList, Endpoint, EndpointError, EndpointKind};
pub use error::{Classification, Operation, OssError, OssErrorKind, ServiceError};
pub use limiter::{AdaptiveRate, RateLimiter, RateMode};
pub use rule::{
    DataEncryption, EncryptionRule, RuleError, SseAlgorithm, Strength, describe_rule, is_downgrade, strength,
};
pub use sign::SignatureVersion;

/// One bucket as the client addresses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BucketTarget {
    pub bucket: String,
    /// Region id, used in the V4 scope.
    pub region: String,
    pub endpoint: Endpoint,
    pub signature_version: SignatureVersion,
}

impl BucketTarget {
    /// A bucket at its region's public endpoint, signed with V4. Validates name and region.
    pub fn new(bucket: &str, region: &str) -> Result<Self, EndpointError> {
        endpoint::validate_bucket_name(bucket)?;
        Ok(Self {
            bucket: bucket.to_owned(),
            region: region.to_owned(),
            endpoint: Endpoint::for_region(region, EndpointKind::Public)?,
            signature_version: SignatureVersion::V4,
        })
    }

    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    pub fn with_signature_version(mut self, version: SignatureVersion) -> Self {
        self.signature_version = version;
        self
    }
}

/// The service endpoint ListBuckets is sent to (no bucket): its region signs the V4 scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceTarget {
    pub region: String,
    pub endpoint: Endpoint,
    pub signature_version: SignatureVersion,
}

impl ServiceTarget {
    /// The region's public endpoint, V4.
    pub fn new(region: &str) -> Result<Self, EndpointError> {
        Ok(Self {
            region: region.to_owned(),
            endpoint: Endpoint::for_region(region, EndpointKind::Public)?,
            signature_version: SignatureVersion::V4,
        })
    }

    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }
}

/// A successful call: its value, the `x-oss-request-id`, and how many attempts it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<T> {
    pub value: T,
    pub request_id: String,
    pub attempts: u32,
}

/// When and how long to wait between attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retries).
    pub max_attempts: u32,
    /// Attempts in all while OSS keeps throttling: more than for other errors, since a throttle
    /// is OSS asking to come back later and the adaptive limiter slows down meanwhile.
    pub throttled_max_attempts: u32,
    /// Backoff base for retryable errors; attempt n waits up to `base * 2^(n-1)`.
    pub base_delay: Duration,
    /// Backoff base when OSS throttles (503 QPS codes): OSS asks for "a few seconds".
    pub throttled_base_delay: Duration,
    /// No single wait exceeds this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            throttled_max_attempts: 6,
            base_delay: Duration::from_millis(200),
            throttled_base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a uniform draw in `[0, min(max, base * 2^(attempt-1))]`; `draw` is in `[0, 1)`.
    pub fn delay(&self, attempt: u32, classification: Classification, draw: f64) -> Duration {
        let base = match classification {
            Classification::Throttled => self.throttled_base_delay,
            _ => self.base_delay,
        };
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = base.saturating_mul(1u32 << exponent).min(self.max_delay);
        ceiling.mul_f64(draw.clamp(0.0, 1.0))
    }
}

/// Told about every OSS attempt: the operation, its outcome (HTTP status such as `"200"`, or
/// `"timeout"`, `"connection"`, `"credentials"`), the OSS error code (empty on success) and how
/// long it took. For metrics; keeps `oss/` free of any metrics library.
#[derive(Clone)]
pub struct Observer(pub Arc<ObserveFn>);

/// The function an [`Observer`] calls: operation, outcome, duration.
pub type ObserveFn = dyn Fn(Operation, &str, &str, Duration) + Send + Sync;

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// The default `--oss-qps` ceiling. The adaptive limiter finds the account's real limit from
/// OSS's throttling answers, and concurrency bounds the rate before that (16 requests in flight
/// at 20 ms is 800/s); the ceiling only guards against a runaway, so it sits above both (a
/// ceiling of 500 was measured to be the bound of a 1,000-manifest `apply`). OSS documents
/// 10,000 QPS per account for all APIs together. Lower it to leave room for other clients of the
/// same account.
pub const DEFAULT_QPS_CEILING: f64 = 1000.0;

/// Client settings. `Default` is what the operator uses unless told otherwise.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Whole-request timeout of one attempt.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// Requests per second across every call of this client (and its clones): a hard ceiling in
    /// adaptive mode, the operating point in fixed mode.
    pub qps: f64,
    /// Adaptive (find the account's limit from throttling answers) or fixed.
    pub rate_mode: RateMode,
    /// Requests that may go out at once after an idle period.
    pub burst: u32,
    /// Endpoints the client may send credentials to.
    pub allow_list: AllowList,
    /// Host names to send to a fixed address instead of resolving them (like `curl --resolve`);
    /// lets tests exercise virtual-hosted addressing against a local emulator.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Sees every attempt (metrics).
    pub observer: Option<Observer>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            qps: DEFAULT_QPS_CEILING,
            rate_mode: RateMode::Adaptive,
            burst: 10,
            allow_list: AllowList::default(),
            resolve: Vec::new(),
            observer: None,
        }
    }
}

/// Client for the bucket-encryption APIs. Cheap to clone; clones share the limiter and the
/// clock-skew correction.
#[derive(Clone, Debug)]
pub struct OssClient {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
    limiter: Arc<RateLimiter>,
    /// Server time minus local time per endpoint, learned from `RequestTimeTooSkewed` answers.
    clocks: Arc<clock::ClockOffsets>,
}

/// One OSS request before signing: what it is, where it goes, its query and body.
struct Call<'a> {
    op: Operation,
    /// `None` for service-level calls (ListBuckets).
    bucket: Option<&'a str>,
    /// The object key (decoded) for object calls (HeadObject).
    key: Option<&'a str>,
    region: &'a str,
    endpoint: &'a Endpoint,
    version: SignatureVersion,
    /// Decoded query parameters (empty value = a bare name).
    query: Vec<(String, String)>,
    body: Option<String>,
    /// The most bytes of an answer's body that are read.
    body_limit: usize,
}

impl Call<'_> {
    /// The URL: the bucket's (path-style or virtual-hosted) or the service root, with the query.
    fn url(&self) -> String {
        let encode = |(k, v): &(String, String)| {
            if v.is_empty() && self.bucket.is_some() {
                sign::uri_encode(k, false)
            } else {
                format!("{}={}", sign::uri_encode(k, false), sign::uri_encode(v, false))
            }
        };
        let query: Vec<String> = self.query.iter().map(encode).collect();
        // Every byte of a key but the unreserved ones is escaped, `/` too (as oss2 sends it), so
        // no part of a key can read as a dot segment that URL normalisation would remove.
        let key = self
            .key
            .map(|key| sign::uri_encode(key, false))
            .unwrap_or_default();
        let base = match self.bucket {
            Some(bucket) if self.endpoint.is_path_style() => {
                format!(
                    "{}://{}/{bucket}/{key}",
                    self.endpoint.scheme().as_str(),
                    self.endpoint.authority()
                )
            }
            Some(bucket) => format!(
                "{}://{bucket}.{}/{key}",
                self.endpoint.scheme().as_str(),
                self.endpoint.authority()
            ),
            None => format!("{}/", self.endpoint),
        };
        if query.is_empty() {
            base
        } else {
            format!("{base}?{}", query.join("&"))
        }
    }
}

/// A 2xx answer, as read off the wire.
struct RawReply {
    status: u16,
    body: bytes::Bytes,
    /// The answer's headers (HeadObject reads its result from them).
    headers: reqwest::header::HeaderMap,
    request_id: String,
    attempts: u32,
}

impl RawReply {
    /// A `BadResponse` for this answer: it came, but `detail` says why it cannot be used.
    fn bad(&self, operation: Operation, bucket: &str, detail: String) -> OssError {
        OssError {
            operation,
            bucket: bucket.to_owned(),
            attempts: self.attempts,
            kind: OssErrorKind::BadResponse {
                status: self.status,
                request_id: self.request_id.clone(),
                detail,
            },
        }
    }

    /// The body read as UTF-8 text by `parse`, or why it could not be (the detail for
    /// [`RawReply::bad`]).
    fn read<T, E: std::fmt::Display>(&self, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, String> {
        let text = std::str::from_utf8(&self.body).map_err(|e| e.to_string())?;
        parse(text).map_err(|e| e.to_string())
    }
}

impl OssClient {
    /// Builds the client (rustls with the ring provider; HTTP/1.1 and HTTP/2).
    pub fn new(config: ClientConfig) -> Result<Self, reqwest::Error> {
        crate::install_tls_provider();
        let mut builder = transport::client_builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("oss-encryption-operator/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(50));
        for (host, addr) in &config.resolve {
            builder = builder.resolve(host, *addr);
        }
        Ok(Self {
            http: builder.build()?,
            limiter: Arc::new(RateLimiter::new(config.qps, config.burst, config.rate_mode)),
            config: Arc::new(config),
            clocks: Arc::default(),
        })
    }

    /// A client for the data plane (ListObjectsV2, HeadObject): the same HTTP client, settings,
    /// allow-list and clock correction, but its own adaptive limiter with `qps` as the ceiling,
    /// never shared with the management calls (OSS limits the two apart).
    pub fn data_plane(&self, qps: f64, burst: u32) -> objects::ObjectClient {
        objects::ObjectClient::new(Self {
            http: self.http.clone(),
            config: self.config.clone(),
            limiter: Arc::new(RateLimiter::new(qps, burst, self.config.rate_mode)),
            clocks: self.clocks.clone(),
        })
    }

    /// The request rate in force now (the adaptive rate after OSS throttled, else the ceiling).
    pub fn current_rate(&self) -> f64 {
        self.limiter.current_rate()
    }

    /// Throttling answers (503 QPS codes, 429) seen by this client and its clones.
    pub fn throttles(&self) -> u64 {
        self.limiter.throttles()
    }

    /// The underlying HTTP client (shared with the RRSA credentials provider).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The correction applied to the local clock when signing for an endpoint.
    pub fn clock_offset(&self, endpoint: &Endpoint) -> SignedDuration {
        self.clocks.offset(&endpoint.authority())
    }

    /// The bucket's rule, or `None` when it has none (404 `NoSuchServerSideEncryptionRule`).
    pub async fn get_encryption(
        &self,
        target: &BucketTarget,
        credentials: &CredentialsProvider,
    ) -> Result<Reply<Option<EncryptionRule>>, OssError> {
        let op = Operation::GetBucketEncryption;
        match self.execute(op, target, credentials, None).await {
            Ok(raw) => {
                let rule = raw
                    .read(|text| {
                        let wire = xml::parse_rule(text).map_err(|e| e.to_string())?;
                        EncryptionRule::from_wire(
                            &wire.algorithm,
                            &wire.kms_master_key_id,
                            &wire.kms_data_encryption,
                        )
                        .map_err(|e| e.to_string())
                    })
                    .map_err(|detail| raw.bad(op, &target.bucket, detail))?;
                Ok(Reply {
                    value: Some(rule),
                    request_id: raw.request_id,
                    attempts: raw.attempts,
                })
            }
            Err(error)
                if error.status() == Some(404) && error.code() == Some("NoSuchServerSideEncryptionRule") =>
            {
                Ok(Reply {
                    value: None,
                    request_id: error.request_id().unwrap_or_default().to_owned(),
                    attempts: error.attempts,
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Sets the bucket's rule (replacing any other). Invalid combinations are refused unsent.
    pub async fn put_encryption(
        &self,
        target: &BucketTarget,
        credentials: &CredentialsProvider,
        rule: &EncryptionRule,
    ) -> Result<Reply<()>, OssError> {
        let op = Operation::PutBucketEncryption;
        rule.validate().map_err(|e| self.refused(op, target, e.into()))?;
        let raw = self
            .execute(op, target, credentials, Some(xml::rule_to_xml(rule)))
            .await?;
        Ok(Reply {
            value: (),
            request_id: raw.request_id,
            attempts: raw.attempts,
        })
    }

    /// Removes the bucket's rule; succeeds when there is none.
    pub async fn delete_encryption(
        &self,
        target: &BucketTarget,
        credentials: &CredentialsProvider,
    ) -> Result<Reply<()>, OssError> {
        let raw = self
            .execute(Operation::DeleteBucketEncryption, target, credentials, None)
            .await?;
        Ok(Reply {
            value: (),
            request_id: raw.request_id,
            attempts: raw.attempts,
        })
    }

    /// One page of ListBuckets (all regions of the account, whichever endpoint is asked).
    pub async fn list_buckets(
        &self,
        service: &ServiceTarget,
        credentials: &CredentialsProvider,
        request: &list::ListRequest,
    ) -> Result<Reply<list::BucketPage>, OssError> {
        let op = Operation::ListBuckets;
        if request.max_keys > list::MAX_KEYS {
            return Err(OssError {
                operation: op,
                bucket: String::new(),
                attempts: 0,
                kind: OssErrorKind::InvalidRequest(format!(
                    "max-keys {} is out of range: 1 to {}",
                    request.max_keys,
                    list::MAX_KEYS
                )),
            });
        }
        let call = Call {
            op,
            bucket: None,
            key: None,
            region: &service.region,
            endpoint: &service.endpoint,
            version: service.signature_version,
            query: request.query(),
            body: None,
            body_limit: transport::BODY_LIMIT,
        };
        let raw = self.send(&call, credentials).await?;
        let page = raw.read(list::parse).map_err(|detail| raw.bad(op, "", detail))?;
        if page.is_truncated && !request.marker.is_empty() && page.next_marker <= request.marker {
            return Err(raw.bad(
                op,
                "",
                format!(
                    "NextMarker {:?} does not move past marker {:?}: the listing would never end",
                    page.next_marker, request.marker
                ),
            ));
        }
        Ok(Reply {
            value: page,
            request_id: raw.request_id,
            attempts: raw.attempts,
        })
    }

    /// The account's buckets whose names start with `prefix`, a page (at most `max_keys`, 1..=1000)
    /// at a time, following `NextMarker` until the listing ends; an error ends the stream.
    pub fn bucket_pages<'a>(
        &'a self,
        service: &'a ServiceTarget,
        credentials: &'a CredentialsProvider,
        prefix: &str,
        max_keys: u32,
    ) -> impl futures_util::Stream<Item = Result<list::BucketPage, OssError>> + 'a {
        let prefix = prefix.to_owned();
        pages::follow(
            Operation::ListBuckets,
            String::new(),
            move |marker| {
                let request = list::ListRequest {
                    prefix: prefix.clone(),
                    marker,
                    max_keys,
                };
                async move { self.list_buckets(service, credentials, &request).await }
            },
            list::marker_problem,
        )
    }

    /// Every bucket whose name starts with `prefix`, paging 1,000 at a time (names ascending).
    pub async fn list_all_buckets(
        &self,
        service: &ServiceTarget,
        credentials: &CredentialsProvider,
        prefix: &str,
    ) -> Result<Vec<list::BucketSummary>, OssError> {
        use futures_util::StreamExt;
        let mut pages = std::pin::pin!(self.bucket_pages(service, credentials, prefix, list::MAX_KEYS));
        let mut buckets = Vec::new();
        while let Some(page) = pages.next().await {
            buckets.extend(page?.buckets);
        }
        Ok(buckets)
    }

    fn refused(&self, operation: Operation, target: &BucketTarget, kind: OssErrorKind) -> OssError {
        OssError {
            operation,
            bucket: target.bucket.clone(),
            attempts: 0,
            kind,
        }
    }

    /// Checks the target, then sends with retries; returns the 2xx answer or the last error.
    async fn execute(
        &self,
        op: Operation,
        target: &BucketTarget,
        credentials: &CredentialsProvider,
        body: Option<String>,
    ) -> Result<RawReply, OssError> {
        let call = Call {
            op,
            bucket: Some(&target.bucket),
            key: None,
            region: &target.region,
            endpoint: &target.endpoint,
            version: target.signature_version,
            query: vec![("encryption".to_owned(), String::new())],
            body,
            body_limit: transport::BODY_LIMIT,
        };
        self.send(&call, credentials).await
    }

    /// Checks a call's bucket, region and endpoint, then sends it with retries.
    async fn send(&self, call: &Call<'_>, credentials: &CredentialsProvider) -> Result<RawReply, OssError> {
        let op = call.op;
        let bucket_name = call.bucket.unwrap_or_default().to_owned();
        let refuse = |kind: OssErrorKind| OssError {
            operation: op,
            bucket: bucket_name.clone(),
            attempts: 0,
            kind,
        };
        if let Some(bucket) = call.bucket {
            endpoint::validate_bucket_name(bucket).map_err(|e| refuse(e.into()))?;
        }
        endpoint::validate_region(call.region)
            .and_then(|()| self.config.allow_list.check(call.endpoint))
            .map_err(|e| refuse(e.into()))?;

        let retry = &self.config.retry;
        let max_attempts = retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let result = self.attempt(call, credentials).await;
            match &result {
                Ok(_) => self.limiter.record(false),
                Err(OssErrorKind::Service(e)) => {
                    self.limiter
                        .record(e.classification() == Classification::Throttled);
                }
                Err(_) => {}
            }
            if let Some(observer) = &self.config.observer {
                let (outcome, code) = match &result {
                    Ok(raw) => (raw.status.to_string(), ""),
                    Err(OssErrorKind::Service(e)) => (e.status.to_string(), e.code.as_str()),
                    Err(OssErrorKind::Timeout(_)) => ("timeout".to_owned(), ""),
                    Err(OssErrorKind::Credentials(_)) => ("credentials".to_owned(), ""),
                    Err(_) => ("connection".to_owned(), ""),
                };
                (observer.0)(op, &outcome, code, started.elapsed());
            }
            let kind = match result {
                Ok(mut raw) => {
                    raw.attempts = attempt;
                    return Ok(raw);
                }
                Err(kind) => kind,
            };
            let error = OssError {
                operation: op,
                bucket: bucket_name.clone(),
                attempts: attempt,
                kind,
            };
            let classification = error.classification();
            tracing::debug!(
                operation = %op,
                bucket = %bucket_name,
                attempt,
                ?classification,
                request_id = error.request_id().unwrap_or(""),
                error = %error.kind,
                "OSS attempt failed"
            );
            let limit = match classification {
                Classification::Throttled => retry.throttled_max_attempts.max(max_attempts),
                _ => max_attempts,
            };
            if classification == Classification::Terminal || attempt >= limit {
                return Err(error);
            }
            let skew_corrected = matches!(&error.kind, OssErrorKind::Service(e) if e.code == "RequestTimeTooSkewed")
                && attempt == 1;
            if !skew_corrected {
                tokio::time::sleep(retry.delay(attempt, classification, fastrand::f64())).await;
            }
        }
    }

    /// One signed request.
    async fn attempt(
        &self,
        call: &Call<'_>,
        provider: &CredentialsProvider,
    ) -> Result<RawReply, OssErrorKind> {
        let op = call.op;
        let body = call.body.as_deref();
        // Credentials are fetched per attempt, so a rotation is picked up on retry.
        let credentials = provider.credentials().await?;
        self.limiter.acquire().await;

        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(body) = body {
            headers.push(("Content-Type".to_owned(), "application/xml".to_owned()));
            headers.push(("Content-MD5".to_owned(), content_md5(body.as_bytes())));
        }
        let query = &call.query;
        let signing_time = self.clocks.now_for(&call.endpoint.authority());
        let authorization = sign::sign(
            call.version,
            &credentials,
            sign::Target {
                method: op.method(),
                bucket: call.bucket,
                key: call.key,
                query,
                region: call.region,
            },
            &mut headers,
            signing_time,
        );

        let method = reqwest::Method::from_bytes(op.method().as_bytes()).expect("static method names");
        let mut request = self
            .http
            .request(method, call.url())
            .timeout(self.config.request_timeout)
            .header("Authorization", authorization);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }

        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        if let Some((status, location)) = transport::redirect(&response) {
            return Err(OssErrorKind::Redirect { status, location });
        }
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let request_id = header("x-oss-request-id");
        let ec = header("x-oss-ec");
        let server_date = header("date");
        let oss_err = header("x-oss-err");
        let response_headers = response.headers().clone();
        let body = match transport::read_body(response, call.body_limit).await {
            Ok(body) => body,
            Err(transport::BodyError::Transport(e)) => return Err(self.transport_error(&e)),
            Err(transport::BodyError::TooLarge { limit }) => {
                return Err(OssErrorKind::BodyTooLarge {
                    status,
                    request_id,
                    limit,
                });
            }
        };
        if (200..300).contains(&status) {
            return Ok(RawReply {
                status,
                body,
                headers: response_headers,
                request_id,
                attempts: 0,
            });
        }
        let error = ServiceError::from_response(status, &error_document(body, &oss_err), &request_id, &ec);
        if error.code == "RequestTimeTooSkewed"
            && let Some(server) = sign::parse_http_date(&server_date)
        {
            match self.clocks.learn(&call.endpoint.authority(), server) {
                Ok(offset) => tracing::warn!(
                    endpoint = %call.endpoint.authority(),
                    offset_ms = offset.as_millis(),
                    "local clock differs from OSS; correcting signatures for this endpoint"
                ),
                Err(skew) => return Err(OssErrorKind::ClockSkew { skew, service: error }),
            }
        }
        Err(OssErrorKind::Service(error))
    }

    fn transport_error(&self, error: &reqwest::Error) -> OssErrorKind {
        if error.is_timeout() {
            OssErrorKind::Timeout(self.config.request_timeout)
        } else {
            OssErrorKind::Connection(error_chain(error))
        }
    }
}

/// `Content-MD5`: base64 of the body's MD5.
pub fn content_md5(body: &[u8]) -> String {
    BASE64.encode(Md5::digest(body))
}

/// The error document of a failed answer: the body, or for a body-less answer (as to HEAD) the
/// base64 document OSS puts in `x-oss-err`.
fn error_document(body: bytes::Bytes, x_oss_err: &str) -> bytes::Bytes {
    if body.is_empty() && !x_oss_err.is_empty() {
        return BASE64
            .decode(x_oss_err.trim())
            .map(bytes::Bytes::from)
            .unwrap_or(body);
    }
    body
}

/// An error and its sources on one line (reqwest hides the useful part in the chain).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_matches_the_sdk_bodies() {
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        let aes = xml::rule_to_xml(&EncryptionRule::new(SseAlgorithm::Aes256));
        assert_eq!(content_md5(aes.as_bytes()), "TaNnET0IZuQL5ShG/X50+Q==");
    }

    #[test]
    fn an_empty_error_body_falls_back_to_x_oss_err() {
        let xml = "<Error><Code>NoSuchBucket</Code><RequestId>R1</RequestId></Error>";
        let encoded = BASE64.encode(xml);
        let document = error_document(bytes::Bytes::new(), &encoded);
        let error = ServiceError::from_response(404, &document, "", "");
        assert_eq!(
            (error.code.as_str(), error.request_id.as_str()),
            ("NoSuchBucket", "R1")
        );
        let body = bytes::Bytes::from_static(b"<Error><Code>A</Code></Error>");
        assert_eq!(
            error_document(body.clone(), &encoded),
            body,
            "a body wins over the header"
        );
        assert!(error_document(bytes::Bytes::new(), "not base64!").is_empty());
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, Classification::Retryable, 0.0), Duration::ZERO);
        assert_eq!(
            policy.delay(1, Classification::Retryable, 1.0),
            Duration::from_millis(200)
        );
        assert_eq!(
            policy.delay(3, Classification::Retryable, 1.0),
            Duration::from_millis(800)
        );
        assert_eq!(
            policy.delay(3, Classification::Throttled, 1.0),
            Duration::from_secs(4)
        );
        assert_eq!(
            policy.delay(40, Classification::Retryable, 1.0),
            Duration::from_secs(20)
        );
        let half = policy.delay(2, Classification::Retryable, 0.5);
        assert_eq!(half, Duration::from_millis(200));
    }

    #[test]
    fn bucket_target_validates() {
        assert!(BucketTarget::new("Bad_Name", "cn-hangzhou").is_err());
        assert!(BucketTarget::new("good-name", "CN").is_err());
        let t = BucketTarget::new("good-name", "cn-hangzhou").unwrap();
        assert_eq!(t.endpoint.host(), "oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(t.signature_version, SignatureVersion::V4);
    }
}
