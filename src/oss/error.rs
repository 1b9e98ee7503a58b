//! `OssError`: what went wrong talking to OSS, with the bucket, operation and request id, and how
//! a caller should react (retry soon, back off harder, or stop until something changes).

use std::fmt;

use super::credentials::CredentialsError;
use super::endpoint::EndpointError;
use super::rule::RuleError;
use super::xml::{ErrorBody, parse_error};

/// The OSS APIs the operator calls: the three bucket-encryption APIs and ListBuckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    GetBucketEncryption,
    PutBucketEncryption,
    DeleteBucketEncryption,
    ListBuckets,
    /// ListObjectsV2 (GetBucketV2): a page of a bucket's objects (data plane).
    ListObjects,
    /// HeadObject: one object's metadata, its encryption among them (data plane).
    HeadObject,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetBucketEncryption => "GetBucketEncryption",
            Self::PutBucketEncryption => "PutBucketEncryption",
            Self::DeleteBucketEncryption => "DeleteBucketEncryption",
            Self::ListBuckets => "ListBuckets",
            Self::ListObjects => "ListObjectsV2",
            Self::HeadObject => "HeadObject",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Self::GetBucketEncryption | Self::ListBuckets | Self::ListObjects => "GET",
            Self::HeadObject => "HEAD",
            Self::PutBucketEncryption => "PUT",
            Self::DeleteBucketEncryption => "DELETE",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a caller should treat an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Classification {
    /// Transient: try again with a short exponential backoff.
    Retryable,
    /// OSS asked us to slow down (503 QPS codes, 429): back off harder.
    Throttled,
    /// Will fail the same way until someone changes the spec, the credentials or the bucket.
    Terminal,
}

/// An error OSS itself answered with: HTTP status plus the fields of its `<Error>` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    /// `BadErrorResponse` when the body could not be read.
    pub code: String,
    pub message: String,
    /// From the body, else from the `x-oss-request-id` header.
    pub request_id: String,
    /// Diagnostic only; never branch on it.
    pub ec: String,
    pub host_id: String,
    /// Only on `SignatureDoesNotMatch`: OSS's string to sign, to debug signing.
    pub string_to_sign: String,
}

/// The code used when an error body cannot be read.
pub const BAD_ERROR_RESPONSE: &str = "BadErrorResponse";

/// 503 codes OSS uses for throttling.
const THROTTLING_CODES: &[&str] = &[
    "MetaOperationQpsLimitExceeded",
    "TotalQpsLimitExceeded",
    "ActiveRequestLimitExceeded",
    "ServiceUnavailable",
];

impl ServiceError {
    /// Builds the error from a non-2xx response: body fields, falling back to headers.
    pub fn from_response(status: u16, body: &[u8], header_request_id: &str, header_ec: &str) -> Self {
        let parsed = std::str::from_utf8(body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| parse_error(b).ok());
        let body = match parsed {
            Some(body) if !body.code.is_empty() => body,
            _ => ErrorBody {
                code: BAD_ERROR_RESPONSE.to_owned(),
                message: format!(
                    "HTTP {status} with an unreadable error body: {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
                ..ErrorBody::default()
            },
        };
        let or = |value: String, fallback: &str| {
            if value.is_empty() {
                fallback.to_owned()
            } else {
                value
            }
        };
        Self {
            status,
            code: body.code,
            message: body.message,
            request_id: or(body.request_id, header_request_id),
            ec: or(body.ec, header_ec),
            host_id: body.host_id,
            string_to_sign: body.string_to_sign,
        }
    }

    /// Branches on status and code only (EC may change without notice).
    pub fn classification(&self) -> Classification {
        match (self.status, self.code.as_str()) {
            (status, code) if is_throttling(status, code) => Classification::Throttled,
            (403, "RequestTimeTooSkewed") => Classification::Retryable,
            (408, _) => Classification::Retryable,
            (status, _) if status >= 500 => Classification::Retryable,
            _ => Classification::Terminal,
        }
    }
}

/// Whether an answer (HTTP status and OSS code) is OSS asking the client to slow down.
pub fn is_throttling(status: u16, code: &str) -> bool {
    status == 429 || (status == 503 && THROTTLING_CODES.contains(&code))
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)?;
        if !self.request_id.is_empty() {
            write!(f, " (request id {})", self.request_id)?;
        }
        if !self.ec.is_empty() {
            write!(f, " (EC {})", self.ec)?;
        }
        Ok(())
    }
}

/// What failed, without the context.
#[derive(Debug, thiserror::Error)]
pub enum OssErrorKind {
    /// OSS answered with an error.
    #[error("{0}")]
    Service(ServiceError),
    /// No answer within the per-request timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The connection failed (DNS, refused, reset, TLS).
    #[error("connection failed: {0}")]
    Connection(String),
    /// A success status with a body that is not a valid rule.
    #[error("unreadable response (HTTP {status}, request id {request_id}): {detail}")]
    BadResponse {
        status: u16,
        request_id: String,
        detail: String,
    },
    /// A 3xx answer: never followed (OSS answers these APIs directly, and following would carry
    /// the signed request past the endpoint allow-list).
    #[error("HTTP {status} redirect to {location} refused: OSS does not redirect these APIs")]
    Redirect { status: u16, location: String },
    /// The response body exceeded the size cap and was not read.
    #[error("HTTP {status} response body larger than {limit} bytes; not read (request id {request_id})")]
    BodyTooLarge {
        status: u16,
        request_id: String,
        limit: usize,
    },
    /// Credentials could not be obtained; nothing was sent.
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
    /// Refused before sending: bad bucket name or region, endpoint not allowed.
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    /// Refused before sending: a rule OSS would reject.
    #[error("{0}")]
    InvalidRule(#[from] RuleError),
    /// Refused before sending: a request parameter OSS would reject (e.g. max-keys over 1000).
    #[error("{0}")]
    InvalidRequest(String),
    /// `RequestTimeTooSkewed` from a server whose `Date` is further from the local clock than
    /// the correction follows (the answer itself kept for its status, code and request id).
    #[error("{skew} ({service})")]
    ClockSkew {
        skew: super::clock::ClockSkew,
        service: ServiceError,
    },
}

/// An OSS call that failed, with which bucket and operation, after how many attempts.
#[derive(Debug)]
pub struct OssError {
    pub operation: Operation,
    pub bucket: String,
    pub attempts: u32,
    pub kind: OssErrorKind,
}

impl fmt::Display for OssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on bucket {:?} failed", self.operation, self.bucket)?;
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for OssError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            OssErrorKind::Credentials(e) => Some(e),
            _ => None,
        }
    }
}

impl OssError {
    /// Retryable, throttled or terminal.
    pub fn classification(&self) -> Classification {
        match &self.kind {
            OssErrorKind::Service(e) | OssErrorKind::ClockSkew { service: e, .. } => e.classification(),
            OssErrorKind::Timeout(_) | OssErrorKind::Connection(_) => Classification::Retryable,
            OssErrorKind::BadResponse { status, .. } if *status >= 500 => Classification::Retryable,
            OssErrorKind::BadResponse { .. } => Classification::Terminal,
            OssErrorKind::Redirect { .. } | OssErrorKind::BodyTooLarge { .. } => Classification::Terminal,
            OssErrorKind::Credentials(e) if e.is_transient() => Classification::Retryable,
            OssErrorKind::Credentials(_)
            | OssErrorKind::Endpoint(_)
            | OssErrorKind::InvalidRule(_)
            | OssErrorKind::InvalidRequest(_) => Classification::Terminal,
        }
    }

    /// The OSS error code, when OSS answered with one.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            OssErrorKind::Service(e) | OssErrorKind::ClockSkew { service: e, .. } => Some(&e.code),
            _ => None,
        }
    }

    /// HTTP status, when a response arrived.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            OssErrorKind::Service(e) | OssErrorKind::ClockSkew { service: e, .. } => Some(e.status),
            OssErrorKind::BadResponse { status, .. }
            | OssErrorKind::Redirect { status, .. }
            | OssErrorKind::BodyTooLarge { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request id of the last attempt, when a response arrived.
    pub fn request_id(&self) -> Option<&str> {
        match &self.kind {
            OssErrorKind::Service(e) | OssErrorKind::ClockSkew { service: e, .. } => {
                Some(e.request_id.as_str())
            }
            OssErrorKind::BadResponse { request_id, .. } | OssErrorKind::BodyTooLarge { request_id, .. } => {
                Some(request_id.as_str())
            }
            _ => None,
        }
        .filter(|id| !id.is_empty())
    }

    /// The service error, if OSS answered with one.
    pub fn service(&self) -> Option<&ServiceError> {
        match &self.kind {
            OssErrorKind::Service(e) | OssErrorKind::ClockSkew { service: e, .. } => Some(e),
            _ => None,
        }
    }

    /// True for `404 NoSuchBucket`.
    pub fn is_no_such_bucket(&self) -> bool {
        self.status() == Some(404) && self.code() == Some("NoSuchBucket")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_xml(code: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error xmlns=\"http://doc.oss-cn-hangzhou.aliyuncs.com\">\
             <Code>{code}</Code><Message>m</Message><RequestId>RID</RequestId><HostId>h</HostId><EC>0000-1</EC></Error>"
        )
    }

    /// Every code the operator meets, with the status OSS sends it with and how it is treated.
    const TABLE: &[(u16, &str, Classification)] = &[
        (404, "NoSuchServerSideEncryptionRule", Classification::Terminal),
        (404, "NoSuchBucket", Classification::Terminal),
        (400, "InvalidArgument", Classification::Terminal),
        (400, "InvalidEncryptionAlgorithmError", Classification::Terminal),
        (400, "MalformedXML", Classification::Terminal),
        (400, "InvalidDigest", Classification::Terminal),
        (400, "InvalidBucketName", Classification::Terminal),
        (403, "AccessDenied", Classification::Terminal),
        (403, "SignatureDoesNotMatch", Classification::Terminal),
        (403, "InvalidAccessKeyId", Classification::Terminal),
        (403, "InvalidSecurityToken", Classification::Terminal),
        (403, "RequestTimeTooSkewed", Classification::Retryable),
        (503, "MetaOperationQpsLimitExceeded", Classification::Throttled),
        (503, "TotalQpsLimitExceeded", Classification::Throttled),
        (503, "ActiveRequestLimitExceeded", Classification::Throttled),
        (503, "ServiceUnavailable", Classification::Throttled),
        (500, "InternalError", Classification::Retryable),
        (502, "BadGateway", Classification::Retryable),
    ];

    #[test]
    fn every_code_parses_and_classifies() {
        for &(status, code, expected) in TABLE {
            let e = ServiceError::from_response(status, error_xml(code).as_bytes(), "HDR", "");
            assert_eq!(e.code, code);
            assert_eq!(e.request_id, "RID", "body request id wins over the header");
            assert_eq!(e.ec, "0000-1");
            assert_eq!(e.host_id, "h");
            assert_eq!(e.classification(), expected, "{status} {code}");
        }
    }

    #[test]
    fn classification_ignores_ec() {
        let a = ServiceError::from_response(403, error_xml("AccessDenied").as_bytes(), "", "");
        let mut b = a.clone();
        b.ec = "0004-00000302".into();
        assert_eq!(a.classification(), b.classification());
    }

    #[test]
    fn unreadable_body_is_bad_error_response_with_header_request_id() {
        for body in [
            &b""[..],
            b"<html>gateway</html>",
            b"not xml at all <",
            b"<Error></Error>",
        ] {
            let e = ServiceError::from_response(502, body, "HDR-RID", "0001-1");
            assert_eq!(e.code, BAD_ERROR_RESPONSE);
            assert_eq!(e.request_id, "HDR-RID");
            assert_eq!(e.ec, "0001-1");
            assert_eq!(e.status, 502);
            assert_eq!(e.classification(), Classification::Retryable);
        }
        let e = ServiceError::from_response(403, b"", "R", "");
        assert_eq!(e.classification(), Classification::Terminal);
    }

    #[test]
    fn throttling_is_by_status_and_code() {
        let e =
            ServiceError::from_response(400, error_xml("MetaOperationQpsLimitExceeded").as_bytes(), "", "");
        assert_eq!(e.classification(), Classification::Terminal);
        let e = ServiceError::from_response(429, b"", "", "");
        assert_eq!(e.classification(), Classification::Throttled);
    }

    #[test]
    fn display_names_bucket_operation_code_and_request_id() {
        let e = OssError {
            operation: Operation::PutBucketEncryption,
            bucket: "logs".into(),
            attempts: 3,
            kind: OssErrorKind::Service(ServiceError::from_response(
                403,
                error_xml("AccessDenied").as_bytes(),
                "",
                "",
            )),
        };
        let text = e.to_string();
        for part in [
            "PutBucketEncryption",
            "\"logs\"",
            "3 attempts",
            "403",
            "AccessDenied",
            "RID",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        assert_eq!(e.request_id(), Some("RID"));
        assert_eq!(e.code(), Some("AccessDenied"));
    }

    #[test]
    fn transport_errors_are_retryable() {
        let e = |kind| OssError {
            operation: Operation::GetBucketEncryption,
            bucket: "b".into(),
            attempts: 1,
            kind,
        };
        assert_eq!(
            e(OssErrorKind::Timeout(std::time::Duration::from_secs(1))).classification(),
            Classification::Retryable
        );
        assert_eq!(
            e(OssErrorKind::Connection("reset".into())).classification(),
            Classification::Retryable
        );
        assert_eq!(
            e(OssErrorKind::Endpoint(EndpointError::InvalidRegion("x".into()))).classification(),
            Classification::Terminal
        );
        assert_eq!(
            e(OssErrorKind::Credentials(CredentialsError::NotFound)).classification(),
            Classification::Terminal
        );
    }
}
