//! Access keys and where they come from: static, the environment, or RRSA (STS `AssumeRoleWithOIDC`).
//!
//! Secrets never leave this module in a printable form: `Debug` and `Display` redact them, and
//! errors name the source of a failure, never its value.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::sign::uri_encode;

/// A secret string whose `Debug`/`Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used (signing), never to print.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An access key pair, with an STS security token for temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: Secret,
    security_token: Option<Secret>,
    expiration: Option<Timestamp>,
}

impl Credentials {
    /// Long-lived access key credentials.
    /// Builds credentials from the fields `accessKeyId`, `accessKeySecret` and optionally
    /// `securityToken`, as Secrets, credentials files and manifests hold them (values trimmed;
    /// empty counts as absent). The one place these names are read.
    pub fn from_fields(get: impl Fn(&str) -> Option<String>) -> Result<Self, MissingKey> {
        let get = |key: &str| get(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let id = get("accessKeyId").ok_or(MissingKey("accessKeyId"))?;
        let secret = get("accessKeySecret").ok_or(MissingKey("accessKeySecret"))?;
        Ok(Self::new(id, secret).with_security_token(get("securityToken").unwrap_or_default()))
    }

    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: Secret::new(access_key_secret),
            security_token: None,
            expiration: None,
        }
    }

    /// Adds an STS security token (sent as `x-oss-security-token`); empty means none.
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.security_token = (!token.is_empty()).then(|| Secret::new(token));
        self
    }

    /// Marks when temporary credentials stop working.
    pub fn with_expiration(mut self, expiration: Timestamp) -> Self {
        self.expiration = Some(expiration);
        self
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn access_key_secret(&self) -> &str {
        self.access_key_secret.expose()
    }

    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_ref().map(Secret::expose)
    }

    pub fn expiration(&self) -> Option<Timestamp> {
        self.expiration
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .field("expiration", &self.expiration)
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "access key {} (secret redacted)", self.access_key_id)
    }
}

/// Why credentials could not be had. Never carries a secret.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no OSS credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET, \
         OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET, or the RRSA variables ALIBABA_CLOUD_ROLE_ARN, \
         ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE"
    )]
    NotFound,
    #[error("{variable} is set but {missing} is not")]
    IncompleteEnvironment {
        variable: &'static str,
        missing: &'static str,
    },
    #[error("cannot read the OIDC token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error(
        "STS AssumeRoleWithOIDC at {endpoint} failed: HTTP {status} {code}: {message} (request id {request_id})"
    )]
    Sts {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error(
        "STS endpoint {endpoint} is not allowed: {reason} (it receives the OIDC token; allow it with \
         --allowed-endpoint-suffixes, exactly for plain http)"
    )]
    StsEndpointNotAllowed { endpoint: String, reason: String },
    #[error(
        "STS AssumeRoleWithOIDC at {endpoint} answered HTTP {status} redirecting to {location}; not followed"
    )]
    StsRedirect {
        endpoint: String,
        status: u16,
        location: String,
    },
    #[error("STS AssumeRoleWithOIDC at {endpoint} could not be reached: {reason}")]
    StsUnreachable { endpoint: String, reason: String },
    #[error("STS AssumeRoleWithOIDC at {endpoint} answered something unreadable: {reason}")]
    StsBadResponse { endpoint: String, reason: String },
}

impl CredentialsError {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::StsUnreachable { .. } => true,
            Self::Sts { status, .. } => *status >= 500 || *status == 429,
            Self::TokenFile { .. } => true,
            _ => false,
        }
    }
}

/// A field a credentials source lacks (`accessKeyId` or `accessKeySecret`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no {0} key")]
pub struct MissingKey(pub &'static str);

/// Where an operation's credentials come from; cheap to clone (the RRSA cache is shared).
#[derive(Clone, Debug)]
pub enum CredentialsProvider {
    /// Fixed credentials (a Kubernetes Secret, a file, the environment read once).
    Static(Credentials),
    /// RRSA: exchange the pod's OIDC token for STS credentials, cached and refreshed before expiry.
    Rrsa(Arc<RrsaProvider>),
}

impl CredentialsProvider {
    /// The operator's own chain from the process environment: env access keys, then RRSA. STS
    /// is called through `client`'s transport (no redirects, capped bodies) and must pass its
    /// endpoint allow-list: the STS endpoint receives the pod's OIDC token.
    pub fn from_env(client: &super::OssClient) -> Result<Self, CredentialsError> {
        Self::from_env_lookup(|name| std::env::var(name).ok(), client)
    }

    /// The same chain over any variable lookup (tests pass a map instead of the process environment).
    pub fn from_env_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        client: &super::OssClient,
    ) -> Result<Self, CredentialsError> {
        if let Some(credentials) = static_from_env(&lookup)? {
            return Ok(Self::Static(credentials));
        }
        if let Some(config) = RrsaConfig::from_env(&lookup)? {
            let not_allowed = |reason: String| CredentialsError::StsEndpointNotAllowed {
                endpoint: config.sts_endpoint.clone(),
                reason,
            };
            let endpoint =
                super::Endpoint::parse(&config.sts_endpoint).map_err(|e| not_allowed(e.to_string()))?;
            client
                .config()
                .allow_list
                .check(&endpoint)
                .map_err(|e| not_allowed(e.to_string()))?;
            return Ok(Self::Rrsa(Arc::new(RrsaProvider::new(
                config,
                client.http().clone(),
            ))));
        }
        Err(CredentialsError::NotFound)
    }

    /// Credentials good for the next request (refreshing RRSA ones when due).
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match self {
            Self::Static(credentials) => Ok(credentials.clone()),
            Self::Rrsa(provider) => provider.credentials().await,
        }
    }
}

impl From<Credentials> for CredentialsProvider {
    fn from(credentials: Credentials) -> Self {
        Self::Static(credentials)
    }
}

/// Reads `ALIBABA_CLOUD_ACCESS_KEY_*` (then `OSS_ACCESS_KEY_*`); a half-set pair is an error.
fn static_from_env(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, CredentialsError> {
    let sets: [(&'static str, &'static str, &'static str); 2] = [
        (
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "ALIBABA_CLOUD_SECURITY_TOKEN",
        ),
        ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN"),
    ];
    let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    for (id_var, secret_var, token_var) in sets {
        match (non_empty(id_var), non_empty(secret_var)) {
            (Some(id), Some(secret)) => {
                let token = non_empty(token_var).unwrap_or_default();
                return Ok(Some(
                    Credentials::new(id.trim(), secret.trim()).with_security_token(token.trim()),
                ));
            }
            (Some(_), None) => {
                return Err(CredentialsError::IncompleteEnvironment {
                    variable: id_var,
                    missing: secret_var,
                });
            }
            (None, Some(_)) => {
                return Err(CredentialsError::IncompleteEnvironment {
                    variable: secret_var,
                    missing: id_var,
                });
            }
            (None, None) => {}
        }
    }
    Ok(None)
}

/// Everything RRSA needs, as the ACK pod-identity webhook injects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrsaConfig {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub token_file: PathBuf,
    pub session_name: String,
    /// Base URL of STS, e.g. `https://sts.cn-hangzhou.aliyuncs.com`.
    pub sts_endpoint: String,
    pub duration: Duration,
}

/// Refresh temporary credentials when less than this is left.
pub const RRSA_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Temporary credentials with less than this left count as expired (clock differences and
/// requests still in flight), so a failed refresh never falls back to one about to lapse.
pub const RRSA_EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// How long a failed STS exchange is remembered: meanwhile callers get the still-valid old
/// credentials or this failure, and STS is not asked again.
pub const RRSA_FAILURE_TTL: Duration = Duration::from_secs(10);

impl RrsaConfig {
    const ROLE_ARN: &'static str = "ALIBABA_CLOUD_ROLE_ARN";
    const PROVIDER_ARN: &'static str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
    const TOKEN_FILE: &'static str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";

    /// Reads the RRSA variables; `None` when none of the three is set.
    pub fn from_env(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, CredentialsError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = [Self::ROLE_ARN, Self::PROVIDER_ARN, Self::TOKEN_FILE];
        let present: Vec<&'static str> = required.into_iter().filter(|n| get(n).is_some()).collect();
        if present.is_empty() {
            return Ok(None);
        }
        if let Some(missing) = required.into_iter().find(|n| get(n).is_none()) {
            return Err(CredentialsError::IncompleteEnvironment {
                variable: present[0],
                missing,
            });
        }
        let sts_endpoint = match get("ALIBABA_CLOUD_STS_ENDPOINT") {
            Some(endpoint) if endpoint.contains("://") => endpoint,
            Some(host) => format!("https://{host}"),
            None => match get("ALIBABA_CLOUD_STS_REGION") {
                Some(region) if get("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED").as_deref() == Some("true") => {
                    format!("https://sts-vpc.{region}.aliyuncs.com")
                }
                Some(region) => format!("https://sts.{region}.aliyuncs.com"),
                None => "https://sts.aliyuncs.com".to_owned(),
            },
        };
        Ok(Some(Self {
            role_arn: get(Self::ROLE_ARN).unwrap_or_default(),
            oidc_provider_arn: get(Self::PROVIDER_ARN).unwrap_or_default(),
            token_file: PathBuf::from(get(Self::TOKEN_FILE).unwrap_or_default()),
            session_name: get("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                .unwrap_or_else(|| "oss-encryption-operator".to_owned()),
            sts_endpoint: sts_endpoint.trim_end_matches('/').to_owned(),
            duration: Duration::from_secs(3600),
        }))
    }
}

/// RRSA credentials with a shared cache and a single-flight refresh: callers holding still-valid
/// credentials never wait for STS, and a failed exchange is remembered for [`RRSA_FAILURE_TTL`].
pub struct RrsaProvider {
    config: RrsaConfig,
    http: reqwest::Client,
    cache: std::sync::Mutex<RrsaCache>,
    /// Held by the one caller (or background task) talking to STS.
    refreshing: Arc<Mutex<()>>,
}

/// What the provider remembers between calls.
#[derive(Default)]
struct RrsaCache {
    credentials: Option<Credentials>,
    failure: Option<(Instant, CredentialsError)>,
}

/// What a caller does with the cache as it finds it.
#[derive(Debug)]
enum CacheDecision {
    /// Fresh credentials: use them.
    Use(Credentials),
    /// Still valid but due for renewal: use them and refresh in the background.
    UseAndRefresh(Credentials),
    /// A recent refresh failed and nothing valid is cached.
    Fail(CredentialsError),
    /// Nothing usable: wait for a refresh.
    Refresh,
}

impl RrsaCache {
    /// The decision at `now` (wall clock for expiry, monotonic `instant` for the failure TTL).
    fn decide(&self, now: Timestamp, instant: Instant) -> CacheDecision {
        let valid = self
            .credentials
            .as_ref()
            .filter(|c| is_fresh(c, now, RRSA_EXPIRY_MARGIN));
        let recent_failure = self
            .failure
            .as_ref()
            .filter(|(at, _)| instant.saturating_duration_since(*at) < RRSA_FAILURE_TTL);
        match (valid, recent_failure) {
            (Some(c), _) if is_fresh(c, now, RRSA_REFRESH_MARGIN) => CacheDecision::Use(c.clone()),
            (Some(c), Some(_)) => CacheDecision::Use(c.clone()),
            (Some(c), None) => CacheDecision::UseAndRefresh(c.clone()),
            (None, Some((_, error))) => CacheDecision::Fail(error.clone()),
            (None, None) => CacheDecision::Refresh,
        }
    }
}

impl fmt::Debug for RrsaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RrsaProvider")
            .field("role_arn", &self.config.role_arn)
            .field("oidc_provider_arn", &self.config.oidc_provider_arn)
            .field("token_file", &self.config.token_file)
            .field("sts_endpoint", &self.config.sts_endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsResponse {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StsErrorBody {
    code: String,
    message: String,
    request_id: String,
}

/// Whether cached temporary credentials still have enough life left at `now`.
pub fn is_fresh(credentials: &Credentials, now: Timestamp, margin: Duration) -> bool {
    match credentials.expiration() {
        None => true,
        Some(expiration) => {
            let margin = jiff::SignedDuration::try_from(margin).unwrap_or(jiff::SignedDuration::MAX);
            now.checked_add(margin)
                .is_ok_and(|deadline| deadline < expiration)
        }
    }
}

impl RrsaProvider {
    pub fn new(config: RrsaConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            cache: std::sync::Mutex::new(RrsaCache::default()),
            refreshing: Arc::new(Mutex::new(())),
        }
    }

    pub fn config(&self) -> &RrsaConfig {
        &self.config
    }

    fn decide(&self) -> CacheDecision {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .decide(Timestamp::now(), Instant::now())
    }

    fn remember(&self, outcome: &Result<Credentials, CredentialsError>) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match outcome {
            Ok(fresh) => {
                cache.credentials = Some(fresh.clone());
                cache.failure = None;
            }
            Err(error) => {
                tracing::warn!(%error, "RRSA refresh failed; STS is not asked again for {RRSA_FAILURE_TTL:?}");
                cache.failure = Some((Instant::now(), error.clone()));
            }
        }
    }

    /// Credentials good for the next request. Fresh ones come from the cache; ones due for
    /// renewal are still handed out while one background task refreshes them; with nothing valid,
    /// callers wait for a single refresh. A failed refresh is remembered for [`RRSA_FAILURE_TTL`].
    pub async fn credentials(self: &Arc<Self>) -> Result<Credentials, CredentialsError> {
        match self.decide() {
            CacheDecision::Use(credentials) => return Ok(credentials),
            CacheDecision::Fail(error) => return Err(error),
            CacheDecision::UseAndRefresh(credentials) => {
                if let Ok(guard) = Arc::clone(&self.refreshing).try_lock_owned() {
                    let provider = Arc::clone(self);
                    tokio::spawn(async move {
                        let outcome = provider.assume_role().await;
                        provider.remember(&outcome);
                        drop(guard);
                    });
                }
                return Ok(credentials);
            }
            CacheDecision::Refresh => {}
        }
        let _guard = self.refreshing.lock().await;
        // Whoever held the lock before may have settled it meanwhile.
        match self.decide() {
            CacheDecision::Use(credentials) | CacheDecision::UseAndRefresh(credentials) => Ok(credentials),
            CacheDecision::Fail(error) => Err(error),
            CacheDecision::Refresh => {
                let outcome = self.assume_role().await;
                self.remember(&outcome);
                outcome
            }
        }
    }

    /// One `AssumeRoleWithOIDC` call: POST form body, so the token stays out of URLs and logs.
    async fn assume_role(&self) -> Result<Credentials, CredentialsError> {
        let config = &self.config;
        let token =
            tokio::fs::read_to_string(&config.token_file)
                .await
                .map_err(|e| CredentialsError::TokenFile {
                    path: config.token_file.clone(),
                    reason: e.to_string(),
                })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(CredentialsError::TokenFile {
                path: config.token_file.clone(),
                reason: "the file is empty".to_owned(),
            });
        }
        let timestamp = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let url = format!(
            "{}/?Action=AssumeRoleWithOIDC&Format=JSON&Version=2015-04-01&Timestamp={}",
            config.sts_endpoint,
            uri_encode(&timestamp, false)
        );
        let form = [
            ("RoleArn", config.role_arn.as_str()),
            ("OIDCProviderArn", config.oidc_provider_arn.as_str()),
            ("OIDCToken", token),
            ("RoleSessionName", config.session_name.as_str()),
            ("DurationSeconds", &config.duration.as_secs().to_string()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
        let endpoint = config.sts_endpoint.clone();
        let response = self
            .http
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| CredentialsError::StsUnreachable {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        if let Some((status, location)) = super::transport::redirect(&response) {
            return Err(CredentialsError::StsRedirect {
                endpoint,
                status,
                location,
            });
        }
        let status = response.status().as_u16();
        let body = super::transport::read_body(response, super::transport::BODY_LIMIT)
            .await
            .map_err(|e| CredentialsError::StsUnreachable {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        if status != 200 {
            let error: StsErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            return Err(CredentialsError::Sts {
                endpoint,
                status,
                code: error.code,
                message: error.message,
                request_id: error.request_id,
            });
        }
        let parsed: StsResponse =
            serde_json::from_slice(&body).map_err(|e| CredentialsError::StsBadResponse {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        let c = parsed.credentials;
        let expiration = c
            .expiration
            .parse::<Timestamp>()
            .map_err(|e| CredentialsError::StsBadResponse {
                endpoint,
                reason: format!("Expiration {:?}: {e}", c.expiration),
            })?;
        Ok(Credentials::new(c.access_key_id, c.access_key_secret)
            .with_security_token(c.security_token)
            .with_expiration(expiration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn debug_and_display_never_show_secrets() {
        let c = Credentials::new("AKID", "super-secret-value").with_security_token("token-value");
        for printed in [
            format!("{c:?}"),
            format!("{c}"),
            format!("{:?}", CredentialsProvider::from(c.clone())),
        ] {
            assert!(!printed.contains("super-secret-value"), "{printed}");
            assert!(!printed.contains("token-value"), "{printed}");
            assert!(printed.contains("AKID"), "{printed}");
        }
    }

    #[test]
    fn alibaba_cloud_variables_win_over_oss_ones() {
        let lookup = env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "a"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "as"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "at"),
            ("OSS_ACCESS_KEY_ID", "o"),
            ("OSS_ACCESS_KEY_SECRET", "os"),
        ]);
        let c = static_from_env(&lookup).unwrap().unwrap();
        assert_eq!(
            (c.access_key_id(), c.access_key_secret(), c.security_token()),
            ("a", "as", Some("at"))
        );
    }

    #[test]
    fn oss_variables_are_the_fallback() {
        let lookup = env(&[
            ("OSS_ACCESS_KEY_ID", "o"),
            ("OSS_ACCESS_KEY_SECRET", "os"),
            ("OSS_SESSION_TOKEN", "ot"),
        ]);
        let c = static_from_env(&lookup).unwrap().unwrap();
        assert_eq!(
            (c.access_key_id(), c.access_key_secret(), c.security_token()),
            ("o", "os", Some("ot"))
        );
    }

    #[test]
    fn half_set_pair_is_an_error_naming_the_missing_variable() {
        let err = static_from_env(&env(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "a")])).unwrap_err();
        assert!(
            err.to_string().contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn nothing_set_is_not_found() {
        crate::install_tls_provider();
        let client = super::super::OssClient::new(super::super::ClientConfig::default()).unwrap();
        let err = CredentialsProvider::from_env_lookup(env(&[]), &client).unwrap_err();
        assert!(matches!(err, CredentialsError::NotFound));
    }

    #[test]
    fn rrsa_config_from_webhook_variables() {
        let lookup = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "acs:ram::1:oidc-provider/p"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/var/run/token"),
            ("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou"),
            ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
        ]);
        let config = RrsaConfig::from_env(&lookup).unwrap().unwrap();
        assert_eq!(config.sts_endpoint, "https://sts-vpc.cn-hangzhou.aliyuncs.com");
        assert_eq!(config.token_file, PathBuf::from("/var/run/token"));
        assert_eq!(config.session_name, "oss-encryption-operator");

        let explicit = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", "r"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "p"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/t"),
            ("ALIBABA_CLOUD_STS_ENDPOINT", "sts.cn-shanghai.aliyuncs.com"),
        ]);
        let config = RrsaConfig::from_env(&explicit).unwrap().unwrap();
        assert_eq!(config.sts_endpoint, "https://sts.cn-shanghai.aliyuncs.com");
        let global = env(&[
            ("ALIBABA_CLOUD_ROLE_ARN", "r"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "p"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/t"),
        ]);
        assert_eq!(
            RrsaConfig::from_env(&global).unwrap().unwrap().sts_endpoint,
            "https://sts.aliyuncs.com"
        );
    }

    #[test]
    fn rrsa_with_a_missing_variable_names_it() {
        let err = RrsaConfig::from_env(&env(&[("ALIBABA_CLOUD_ROLE_ARN", "r")])).unwrap_err();
        assert!(
            err.to_string().contains("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
            "{err}"
        );
    }

    #[test]
    fn freshness_respects_the_margin() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let expiring = |secs: i64| {
            Credentials::new("a", "s")
                .with_expiration(now.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap())
        };
        assert!(is_fresh(&expiring(600), now, RRSA_REFRESH_MARGIN));
        assert!(!is_fresh(&expiring(200), now, RRSA_REFRESH_MARGIN));
        assert!(is_fresh(&expiring(200), now, Duration::ZERO));
        assert!(!is_fresh(&expiring(-1), now, Duration::ZERO));
        assert!(is_fresh(&Credentials::new("a", "s"), now, RRSA_REFRESH_MARGIN));
    }

    #[test]
    fn the_cache_hands_out_valid_credentials_and_remembers_failures() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let instant = Instant::now();
        let expiring = |secs: i64| {
            Credentials::new("a", "s")
                .with_expiration(now.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap())
        };
        let failure = CredentialsError::StsUnreachable {
            endpoint: "https://sts".into(),
            reason: "timeout".into(),
        };
        let cache = |secs: Option<i64>, failed_ago: Option<Duration>| RrsaCache {
            credentials: secs.map(expiring),
            failure: failed_ago.map(|ago| (instant - ago, failure.clone())),
        };
        let decide = |c: RrsaCache| format!("{:?}", c.decide(now, instant));
        let recent = Some(Duration::from_secs(1));
        let old = Some(RRSA_FAILURE_TTL + Duration::from_secs(1));
        assert!(decide(cache(Some(3600), None)).starts_with("Use("));
        assert!(decide(cache(Some(120), None)).starts_with("UseAndRefresh("));
        assert!(decide(cache(Some(120), recent)).starts_with("Use("));
        assert!(decide(cache(Some(120), old)).starts_with("UseAndRefresh("));
        // Inside the expiry margin the old credentials are not handed out any more.
        assert!(decide(cache(Some(30), None)).starts_with("Refresh"));
        assert!(decide(cache(Some(30), recent)).starts_with("Fail("));
        assert!(decide(cache(None, recent)).starts_with("Fail("));
        assert!(decide(cache(None, old)).starts_with("Refresh"));
    }
}
