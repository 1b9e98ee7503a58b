//! Why a reconcile failed, and the one table that maps every error to its condition reason,
//! whether it keeps the Ready condition, and how soon to retry. Pure: no I/O here.

use std::time::Duration;

use super::status::Reason;
use crate::kms::KmsError;
use crate::oss::{Classification, CredentialsError, EndpointError, OssError, OssErrorKind};

/// Why a reconcile failed; each variant is one step's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be acted on (bypassed admission, or an undeserialisable object).
    #[error("{0}")]
    InvalidSpec(String),
    /// No usable credentials (Secret or key missing, operator credentials not allowed).
    #[error("{0}")]
    CredentialsNotFound(String),
    /// The endpoint is outside the operator's allow-list: nothing is sent.
    #[error("{0}")]
    EndpointNotAllowed(String),
    /// Another resource owns the bucket.
    #[error("BucketEncryption {owner} already manages bucket {bucket}; this one is left untouched")]
    Conflict { owner: String, bucket: String },
    /// No BucketEncryptionGrant permits this resource (tenancy grants): no OSS request, no
    /// finalizer, not a claimant; a grant change re-triggers it.
    #[error("{0}; nothing is written and the bucket's rule is left as it is")]
    NotPermitted(String),
    /// An OSS call failed.
    #[error("{0}")]
    Oss(Box<OssError>),
    /// The KMS key pre-flight could not run (no `kms:DescribeKey` permission, KMS unreachable):
    /// never a pass.
    #[error(
        "{0}; the key could not be checked, so nothing is written (grant kms:DescribeKey, or run with --kms-preflight=false)"
    )]
    KeyCheckFailed(std::sync::Arc<KmsError>),
    /// Not every BucketEncryption cache has listed yet, so a claim on a bucket cannot be ruled
    /// out: nothing is written until it can.
    #[error(
        "waiting for the BucketEncryption caches to list (nothing is written until every claim on a bucket is known)"
    )]
    ClaimsIncomplete,
    /// A Kubernetes API call failed (`action` says which, e.g. "reading Secret ns/name").
    #[error("Kubernetes API error {action}: {}", describe_kube(.source))]
    Kube {
        action: String,
        source: Box<kube::Error>,
    },
}

impl From<OssError> for Error {
    fn from(error: OssError) -> Self {
        Self::Oss(Box::new(error))
    }
}

impl Error {
    /// A Kubernetes API failure while doing `action`.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source: Box::new(source),
        }
    }

    /// The same error for another reconcile that waited on the read that failed: the same
    /// message and the same row of the table (a Kubernetes transport failure is carried by its
    /// message, under kube's `ServiceError` for kinds other than a service error). `None` for
    /// OSS failures, which are never shared.
    pub fn for_waiter(&self) -> Option<Self> {
        Some(match self {
            Self::InvalidSpec(m) => Self::InvalidSpec(m.clone()),
            Self::CredentialsNotFound(m) => Self::CredentialsNotFound(m.clone()),
            Self::EndpointNotAllowed(m) => Self::EndpointNotAllowed(m.clone()),
            Self::NotPermitted(m) => Self::NotPermitted(m.clone()),
            Self::Conflict { owner, bucket } => Self::Conflict {
                owner: owner.clone(),
                bucket: bucket.clone(),
            },
            Self::KeyCheckFailed(e) => Self::KeyCheckFailed(e.clone()),
            Self::ClaimsIncomplete => Self::ClaimsIncomplete,
            Self::Kube { action, source } => Self::kube(
                action.clone(),
                match source.as_ref() {
                    kube::Error::Api(status) => kube::Error::Api(status.clone()),
                    kube::Error::Service(inner) => kube::Error::Service(inner.to_string().into()),
                    other => kube::Error::Service(other.to_string().into()),
                },
            ),
            Self::Oss(_) => return None,
        })
    }

    /// The error's row of the table.
    pub fn policy(&self) -> Policy {
        use Retry::*;
        let (reason, retry) = match self {
            Self::InvalidSpec(_) => (Reason::InvalidSpec, AwaitChange),
            Self::CredentialsNotFound(_) => (Reason::CredentialsNotFound, Credentials),
            Self::EndpointNotAllowed(_) => (Reason::EndpointNotAllowed, Terminal),
            Self::Conflict { .. } => (Reason::Conflict, Terminal),
            Self::NotPermitted(_) => (Reason::NotPermitted, AwaitChange),
            Self::Kube { source, .. } => (Reason::KubernetesError, kube_retry(source)),
            Self::ClaimsIncomplete => (Reason::KubernetesError, Transient),
            Self::Oss(error) => oss_row(error),
            Self::KeyCheckFailed(error) => (
                Reason::KeyCheckFailed,
                match error.classification() {
                    Classification::Throttled => Throttled,
                    Classification::Retryable => Transient,
                    Classification::Terminal => Credentials,
                },
            ),
        };
        Policy {
            reason,
            // A key that cannot be checked never leaves a Ready=True standing.
            keeps_ready: matches!(retry, Transient | Throttled) && reason != Reason::KeyCheckFailed,
            retry,
        }
    }

    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "invalid_spec",
            Self::CredentialsNotFound(_) => "credentials_not_found",
            Self::EndpointNotAllowed(_) => "endpoint_not_allowed",
            Self::Conflict { .. } => "conflict",
            Self::NotPermitted(_) => "not_permitted",
            Self::Oss(_) => "oss",
            Self::KeyCheckFailed(_) => "key_check_failed",
            Self::Kube { .. } => "kube",
            Self::ClaimsIncomplete => "claims_incomplete",
        }
    }

    /// The OSS request id, when an OSS call answered.
    pub fn request_id(&self) -> Option<String> {
        match self {
            Self::Oss(e) => e.request_id().map(str::to_owned),
            Self::KeyCheckFailed(e) => e.request_id().map(str::to_owned),
            _ => None,
        }
    }

    /// The error for an event note: without the request id, so repeats fold into one series.
    pub fn without_request_id(&self) -> String {
        match self {
            Self::Oss(e) => match e.service() {
                Some(s) => format!(
                    "{} on bucket {:?}: HTTP {} {}: {}",
                    e.operation, e.bucket, s.status, s.code, s.message
                ),
                None => format!("{} on bucket {:?}: {}", e.operation, e.bucket, e.kind),
            },
            Self::KeyCheckFailed(e) => match &e.kind {
                crate::kms::KmsErrorKind::Service(s) => format!(
                    "KMS DescribeKey of key {} in {}: HTTP {} {}: {}",
                    e.key_id, e.region, s.status, s.code, s.message
                ),
                _ => self.to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// How an error is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A blip (5xx, timeout, connection, clock skew, Kubernetes 409/5xx): soon, growing.
    Transient,
    /// OSS throttling: later than a blip, growing.
    Throttled,
    /// Credentials missing or refused: capped low so that a fix is noticed within minutes.
    Credentials,
    /// Nothing will change by itself (bucket missing, endpoint refused, conflict, RBAC): long.
    Terminal,
    /// Only a spec change helps: no retry at all.
    AwaitChange,
}

/// One row of the error table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub reason: Reason,
    /// Transient errors keep the stored Ready (no flapping on a blip); others set Ready=False.
    pub keeps_ready: bool,
    pub retry: Retry,
}

fn oss_row(error: &OssError) -> (Reason, Retry) {
    let retry = match error.classification() {
        Classification::Throttled => Retry::Throttled,
        Classification::Terminal => Retry::Terminal,
        _ => Retry::Transient,
    };
    let reason = match &error.kind {
        OssErrorKind::Credentials(
            CredentialsError::NotFound | CredentialsError::IncompleteEnvironment { .. },
        ) => return (Reason::CredentialsNotFound, Retry::Credentials),
        OssErrorKind::Endpoint(EndpointError::NotAllowed { .. } | EndpointError::PlainHttp(_)) => {
            return (Reason::EndpointNotAllowed, Retry::Terminal);
        }
        OssErrorKind::Endpoint(_) | OssErrorKind::InvalidRule(_) | OssErrorKind::InvalidRequest(_) => {
            return (Reason::InvalidSpec, Retry::AwaitChange);
        }
        _ if retry == Retry::Throttled => Reason::Throttled,
        _ if error.is_no_such_bucket() => Reason::BucketNotFound,
        _ if error.status() == Some(403) && error.code() != Some("RequestTimeTooSkewed") => {
            return (Reason::AccessDenied, Retry::Credentials);
        }
        _ => Reason::OssError,
    };
    (reason, retry)
}

/// Kubernetes answers that no retry can fix (RBAC, missing or invalid objects) are terminal;
/// conflicts, throttling, server errors and transport failures are blips.
fn kube_retry(error: &kube::Error) -> Retry {
    match error {
        kube::Error::Api(status) if matches!(status.code, 400 | 401 | 403 | 404 | 405 | 415 | 422) => {
            Retry::Terminal
        }
        _ => Retry::Transient,
    }
}

/// The Kubernetes error in one line: code, reason and the server's message (not the Debug dump).
fn describe_kube(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

/// The retry delay after `failures` consecutive failures; `draw` in `[0, 1)` spreads the fleet.
/// `None` for errors that wait for a spec change.
pub fn backoff(retry: Retry, failures: u32, draw: f64) -> Option<Duration> {
    let (base, cap) = match retry {
        Retry::Transient => (Duration::from_secs(1), Duration::from_secs(300)),
        Retry::Throttled => (Duration::from_secs(5), Duration::from_secs(300)),
        Retry::Credentials => (Duration::from_secs(5), Duration::from_secs(180)),
        Retry::Terminal => (Duration::from_secs(60), Duration::from_secs(900)),
        Retry::AwaitChange => return None,
    };
    let ceiling = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(cap);
    let draw = if draw.is_finite() {
        draw.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Equal jitter: at least half the ceiling, so retries never bunch at zero.
    Some(ceiling.mul_f64(0.5 + 0.5 * draw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oss_error(status: u16, code: &str) -> Error {
        Error::from(OssError {
            operation: crate::oss::Operation::GetBucketEncryption,
            bucket: "b".into(),
            attempts: 1,
            kind: OssErrorKind::Service(crate::oss::ServiceError::from_response(
                status,
                format!("<Error><Code>{code}</Code><Message>m</Message><RequestId>R</RequestId></Error>")
                    .as_bytes(),
                "",
                "",
            )),
        })
    }

    fn kube_error(code: u16, reason: &str) -> Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "reason": reason, "message": "secrets \"s\" is forbidden"
        }))
        .unwrap();
        Error::kube("reading Secret ns/s", kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn a_waiter_gets_the_same_message_and_row_and_oss_failures_are_not_copied() {
        let transport = Error::kube(
            "reading Secret ns/s",
            kube::Error::Service("connection reset by peer".into()),
        );
        for error in [
            kube_error(403, "Forbidden"),
            kube_error(500, "InternalError"),
            transport,
            Error::CredentialsNotFound("Secret ns/s not found".into()),
            Error::ClaimsIncomplete,
        ] {
            let copy = error.for_waiter().expect("copied");
            assert_eq!(copy.to_string(), error.to_string());
            assert_eq!(copy.policy(), error.policy());
            assert_eq!(copy.metric_label(), error.metric_label());
        }
        assert!(oss_error(503, "ServiceUnavailable").for_waiter().is_none());
    }

    /// The table, written out independently of the code that implements it.
    #[test]
    fn every_error_has_its_row() {
        use Retry::*;
        let rows: Vec<(Error, Reason, bool, Retry)> = vec![
            (
                oss_error(404, "NoSuchBucket"),
                Reason::BucketNotFound,
                false,
                Terminal,
            ),
            (
                oss_error(403, "AccessDenied"),
                Reason::AccessDenied,
                false,
                Credentials,
            ),
            (
                oss_error(403, "SignatureDoesNotMatch"),
                Reason::AccessDenied,
                false,
                Credentials,
            ),
            (
                oss_error(403, "InvalidAccessKeyId"),
                Reason::AccessDenied,
                false,
                Credentials,
            ),
            (
                oss_error(503, "MetaOperationQpsLimitExceeded"),
                Reason::Throttled,
                true,
                Throttled,
            ),
            (oss_error(500, "InternalError"), Reason::OssError, true, Transient),
            (
                oss_error(403, "RequestTimeTooSkewed"),
                Reason::OssError,
                true,
                Transient,
            ),
            (
                oss_error(400, "InvalidArgument"),
                Reason::OssError,
                false,
                Terminal,
            ),
            (
                kube_error(403, "Forbidden"),
                Reason::KubernetesError,
                false,
                Terminal,
            ),
            (
                kube_error(409, "Conflict"),
                Reason::KubernetesError,
                true,
                Transient,
            ),
            (
                kube_error(500, "InternalError"),
                Reason::KubernetesError,
                true,
                Transient,
            ),
            (
                Error::InvalidSpec("x".into()),
                Reason::InvalidSpec,
                false,
                AwaitChange,
            ),
            (
                Error::CredentialsNotFound("x".into()),
                Reason::CredentialsNotFound,
                false,
                Credentials,
            ),
            (
                Error::EndpointNotAllowed("x".into()),
                Reason::EndpointNotAllowed,
                false,
                Terminal,
            ),
            (
                Error::Conflict {
                    owner: "a/b".into(),
                    bucket: "c".into(),
                },
                Reason::Conflict,
                false,
                Terminal,
            ),
            (
                Error::NotPermitted("namespace a may not claim bucket b".into()),
                Reason::NotPermitted,
                false,
                AwaitChange,
            ),
        ];
        for (error, reason, keeps_ready, retry) in rows {
            let policy = error.policy();
            assert_eq!(
                (policy.reason, policy.keeps_ready, policy.retry),
                (reason, keeps_ready, retry),
                "{error}"
            );
        }
    }

    #[test]
    fn kubernetes_errors_read_as_one_line_naming_the_action() {
        let text = kube_error(403, "Forbidden").to_string();
        assert_eq!(
            text,
            "Kubernetes API error reading Secret ns/s: 403 Forbidden: secrets \"s\" is forbidden"
        );
    }

    #[test]
    fn backoff_grows_caps_and_never_hits_zero() {
        assert_eq!(backoff(Retry::Transient, 1, 1.0), Some(Duration::from_secs(1)));
        assert_eq!(backoff(Retry::Transient, 4, 1.0), Some(Duration::from_secs(8)));
        assert_eq!(backoff(Retry::Transient, 30, 1.0), Some(Duration::from_secs(300)));
        assert_eq!(
            backoff(Retry::Transient, u32::MAX, 1.0),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            backoff(Retry::Transient, 1, 0.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            backoff(Retry::Credentials, 20, 1.0),
            Some(Duration::from_secs(180)),
            "a fix is noticed within 3 minutes"
        );
        assert_eq!(backoff(Retry::Terminal, 1, 1.0), Some(Duration::from_secs(60)));
        assert_eq!(backoff(Retry::Terminal, 10, 1.0), Some(Duration::from_secs(900)));
        assert_eq!(backoff(Retry::AwaitChange, 1, 1.0), None);
        assert_eq!(
            backoff(Retry::Terminal, 1, f64::NAN),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn event_notes_leave_out_request_ids_so_repeats_fold() {
        let note = oss_error(403, "AccessDenied").without_request_id();
        assert!(
            note.contains("AccessDenied") && !note.contains("R)") && !note.contains("request id"),
            "{note}"
        );
    }
}
