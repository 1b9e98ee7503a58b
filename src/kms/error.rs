//! KMS errors: what went wrong, on which key and region, with KMS's code and request id.

use std::time::Duration;

use serde::Deserialize;

use crate::oss::{Classification, CredentialsError, EndpointError};

/// A DescribeKey call that failed, and where.
#[derive(Debug, thiserror::Error)]
#[error("KMS DescribeKey of key {key_id} in {region}: {kind}")]
pub struct KmsError {
    pub key_id: String,
    pub region: String,
    /// Attempts made (0 = refused before sending).
    pub attempts: u32,
    pub kind: KmsErrorKind,
}

/// What went wrong. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum KmsErrorKind {
    #[error("HTTP {} {}: {} (request id {})", .0.status, .0.code, .0.message, .0.request_id)]
    Service(ServiceError),
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("KMS answered with a redirect (HTTP {status} to {location}), which is never followed")]
    Redirect { status: u16, location: String },
    #[error("HTTP {status}: body larger than {limit} bytes (request id {request_id})")]
    BodyTooLarge {
        status: u16,
        request_id: String,
        limit: usize,
    },
    #[error("HTTP {status}: unreadable answer: {detail} (request id {request_id})")]
    BadResponse {
        status: u16,
        request_id: String,
        detail: String,
    },
    /// A clock-skew answer from a server whose `Date` is further from the local clock than the
    /// correction follows (the answer kept for its code and request id).
    #[error("{skew} (HTTP {} {}: {} (request id {}))", .service.status, .service.code, .service.message, .service.request_id)]
    ClockSkew {
        skew: crate::oss::clock::ClockSkew,
        service: ServiceError,
    },
}

/// An error KMS answered with (JSON `Code`, `Message`, `RequestId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// `x-acs-retry-after` was present: the gateway asks the caller to come back later.
    pub retry_after: bool,
    /// How long it asks to wait (the header's milliseconds), when it said.
    pub retry_after_wait: Option<Duration>,
}

/// The longest `x-acs-retry-after` wait honoured: a gateway cannot park a caller for longer.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Reads an `x-acs-retry-after` value: milliseconds, as the Darabonba SDKs read it (their
/// `getThrottlingTimeLeft`); zero, negative or not a number is no wait; capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let millis = value.trim().parse::<u64>().ok().filter(|ms| *ms > 0)?;
    Some(Duration::from_millis(millis).min(MAX_RETRY_AFTER))
}

/// Codes KMS and the POP gateway use for throttling.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "Rejected.Throttling",
    "Throttling.User",
    "Throttling.Api",
];

/// The code used when an error body cannot be read.
pub const BAD_ERROR_RESPONSE: &str = "BadErrorResponse";

impl ServiceError {
    /// Reads a JSON error body (`Code|code`, `Message|message`, `RequestId|requestId`); a body
    /// that is not one becomes `BadErrorResponse` with its first bytes.
    pub fn from_response(status: u16, body: &[u8], retry_after: bool) -> Self {
        #[derive(Deserialize, Default)]
        struct Body {
            #[serde(alias = "code", rename = "Code", default)]
            code: String,
            #[serde(alias = "message", rename = "Message", default)]
            message: String,
            #[serde(alias = "requestId", rename = "RequestId", default)]
            request_id: String,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(parsed) if !parsed.code.is_empty() => Self {
                status,
                code: parsed.code,
                message: parsed.message.chars().take(500).collect(),
                request_id: parsed.request_id,
                retry_after,
                retry_after_wait: None,
            },
            _ => Self {
                status,
                code: BAD_ERROR_RESPONSE.to_owned(),
                message: format!(
                    "HTTP {status} with an unreadable error body: {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
                request_id: String::new(),
                retry_after,
                retry_after_wait: None,
            },
        }
    }

    /// Throttling is retried with the throttled backoff; 5xx and 408 are retryable; the rest
    /// (not found, no permission, bad signature, clock skew) needs someone to change something.
    pub fn classification(&self) -> Classification {
        if self.retry_after || self.status == 429 || THROTTLING_CODES.contains(&self.code.as_str()) {
            return Classification::Throttled;
        }
        match self.status {
            408 => Classification::Retryable,
            status if status >= 500 => Classification::Retryable,
            _ => Classification::Terminal,
        }
    }
}

impl KmsError {
    pub fn classification(&self) -> Classification {
        match &self.kind {
            KmsErrorKind::Service(e) | KmsErrorKind::ClockSkew { service: e, .. } => e.classification(),
            KmsErrorKind::Timeout(_) | KmsErrorKind::Connection(_) => Classification::Retryable,
            KmsErrorKind::Credentials(e) if e.is_transient() => Classification::Retryable,
            _ => Classification::Terminal,
        }
    }

    /// The wait KMS asked for with `x-acs-retry-after`, when it did.
    pub fn retry_after_wait(&self) -> Option<Duration> {
        match &self.kind {
            KmsErrorKind::Service(e) => e.retry_after_wait,
            _ => None,
        }
    }

    /// KMS's code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            KmsErrorKind::Service(e) | KmsErrorKind::ClockSkew { service: e, .. } => Some(&e.code),
            _ => None,
        }
    }

    /// The request id of the answer, when there was one.
    pub fn request_id(&self) -> Option<&str> {
        match &self.kind {
            KmsErrorKind::Service(e) | KmsErrorKind::ClockSkew { service: e, .. } => {
                Some(e.request_id.as_str())
            }
            KmsErrorKind::BodyTooLarge { request_id, .. } | KmsErrorKind::BadResponse { request_id, .. } => {
                Some(request_id.as_str())
            }
            _ => None,
        }
        .filter(|id| !id.is_empty())
    }

    /// KMS says the key or alias does not exist (404 `Forbidden.KeyNotFound` / `Forbidden.AliasNotFound`).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.code(),
            Some("Forbidden.KeyNotFound" | "Forbidden.AliasNotFound")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_in_both_spellings() {
        let pop = br#"{"RequestId":"R1","HostId":"kms","Code":"Forbidden.KeyNotFound","Message":"The specified Key is not found."}"#;
        let e = ServiceError::from_response(404, pop, false);
        assert_eq!(
            (e.code.as_str(), e.request_id.as_str()),
            ("Forbidden.KeyNotFound", "R1")
        );
        let lower = br#"{"requestId":"R2","code":"Throttling","message":"slow down"}"#;
        let e = ServiceError::from_response(400, lower, false);
        assert_eq!((e.code.as_str(), e.request_id.as_str()), ("Throttling", "R2"));
        assert_eq!(e.classification(), Classification::Throttled);
        let xml = ServiceError::from_response(500, b"<Error/>", false);
        assert_eq!(xml.code, BAD_ERROR_RESPONSE);
    }

    #[test]
    fn retry_after_is_milliseconds_capped_and_ignored_when_meaningless() {
        assert_eq!(parse_retry_after(" 2000 "), Some(Duration::from_millis(2000)));
        assert_eq!(parse_retry_after("80"), Some(Duration::from_millis(80)));
        assert_eq!(parse_retry_after("99999999999"), Some(MAX_RETRY_AFTER));
        for meaningless in ["0", "", "-5", "soon", "1.5"] {
            assert_eq!(parse_retry_after(meaningless), None, "{meaningless:?}");
        }
    }

    #[test]
    fn classification_follows_status_code_and_retry_after() {
        let class = |status, code: &str, retry_after| {
            ServiceError {
                status,
                code: code.into(),
                message: String::new(),
                request_id: String::new(),
                retry_after,
                retry_after_wait: None,
            }
            .classification()
        };
        assert_eq!(
            class(400, "Rejected.Throttling", false),
            Classification::Throttled
        );
        assert_eq!(
            class(403, "Forbidden.NoPermission", true),
            Classification::Throttled
        );
        assert_eq!(class(429, "", false), Classification::Throttled);
        assert_eq!(
            class(503, "ServiceUnavailableTemporary", false),
            Classification::Retryable
        );
        assert_eq!(class(500, "InternalFailure", false), Classification::Retryable);
        assert_eq!(
            class(404, "Forbidden.KeyNotFound", false),
            Classification::Terminal
        );
        assert_eq!(
            class(403, "Forbidden.NoPermission", false),
            Classification::Terminal
        );
        assert_eq!(
            class(400, "SignatureDoesNotMatch", false),
            Classification::Terminal
        );
        assert_eq!(
            class(400, "InvalidTimeStamp.Expired", false),
            Classification::Terminal
        );
    }
}
