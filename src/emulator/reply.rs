//! Answers in OSS's shape: every response carries `x-oss-request-id`, `Date` (the emulator's
//! clock), `Server: AliyunOSS`; errors carry the `<Error>` document and `x-oss-ec`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use crate::oss::sign::http_date;
use crate::oss::xml::{ErrorBody, error_to_xml};

/// An OSS error the emulator answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OssFault {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub ec: &'static str,
    /// `SignatureDoesNotMatch` extras: what the server signed, and the access key id.
    pub signature_detail: Option<Box<(String, String)>>,
}

impl OssFault {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>, ec: &'static str) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            ec,
            signature_detail: None,
        }
    }

    pub fn no_such_bucket() -> Self {
        Self::new(
            404,
            "NoSuchBucket",
            "The specified bucket does not exist.",
            "0015-00000101",
        )
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(403, "AccessDenied", message, "0003-00000001")
    }

    pub fn invalid_argument(message: impl Into<String>, ec: &'static str) -> Self {
        Self::new(400, "InvalidArgument", message, ec)
    }

    pub fn signature_does_not_match(string_to_sign: String, access_key_id: &str) -> Self {
        Self {
            signature_detail: Some(Box::new((string_to_sign, access_key_id.to_owned()))),
            ..Self::new(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method.",
                "0002-00000040",
            )
        }
    }

    pub fn throttled() -> Self {
        Self::new(
            503,
            "MetaOperationQpsLimitExceeded",
            "Qps limit for the meta operation is exceeded.",
            "0004-00000303",
        )
    }

    pub fn internal_error() -> Self {
        Self::new(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
            "0000-00000001",
        )
    }
}

/// Adds the headers every OSS answer carries.
pub fn finish(mut response: Response, request_id: &str, now: jiff::Timestamp) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-oss-request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&http_date(now)) {
        headers.insert("date", value);
    }
    headers.insert("server", HeaderValue::from_static("AliyunOSS"));
    if let Ok(value) = HeaderValue::from_str(&now.strftime("%Y%m%dT%H%M%SZ").to_string()) {
        headers.insert("x-oss-server-time", value);
    }
    response
}

/// The `<Error>` document for a fault.
fn error_body(fault: &OssFault, request_id: &str, host: &str, bucket: &str) -> ErrorBody {
    let (string_to_sign, access_key_id) = fault.signature_detail.as_deref().cloned().unwrap_or_default();
    ErrorBody {
        code: fault.code.to_owned(),
        message: fault.message.clone(),
        request_id: request_id.to_owned(),
        host_id: host.to_owned(),
        ec: fault.ec.to_owned(),
        bucket_name: bucket.to_owned(),
        string_to_sign,
        access_key_id,
        recommend_doc: format!("https://api.aliyun.com/troubleshoot?q={}", fault.ec),
    }
}

/// The `<Error>` answer for a fault.
pub fn error_response(fault: &OssFault, request_id: &str, host: &str, bucket: &str) -> Response {
    let body = error_body(fault, request_id, host, bucket);
    let mut response = xml_response(fault.status, error_to_xml(&body));
    if let Ok(value) = HeaderValue::from_str(fault.ec) {
        response.headers_mut().insert("x-oss-ec", value);
    }
    response
}

/// The error answer to a HEAD request: no body, the `<Error>` document base64-encoded in
/// `x-oss-err` (as OSS sends it), the EC in `x-oss-ec`.
pub fn head_error_response(fault: &OssFault, request_id: &str, host: &str, bucket: &str) -> Response {
    use base64::Engine as _;
    let xml = error_to_xml(&error_body(fault, request_id, host, bucket));
    let mut response = empty_response(fault.status);
    let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
    for (name, value) in [("x-oss-err", encoded.as_str()), ("x-oss-ec", fault.ec)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A response with an XML body.
pub fn xml_response(status: u16, xml: String) -> Response {
    let mut response = Response::new(Body::from(xml));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/xml"));
    response
}

/// An empty response with a status.
pub fn empty_response(status: u16) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// A response whose body fails mid-stream, so the client sees the connection cut.
pub fn connection_reset() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "emulator: injected connection reset",
        ))
    });
    Response::new(Body::from_stream(failing))
}
