//! The OSS side of the emulator: addressing, faults, authentication and the three
//! bucket-encryption APIs with OSS's status codes and error bodies.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use axum::response::Response;

use super::auth::{SignedRequest, verify};
use super::objects::Route;
use super::reply::{
    OssFault, connection_reset, empty_response, error_response, finish, head_error_response, xml_response,
};
use super::state::{EmulatorState, StoredRule};
use crate::oss::content_md5;
use crate::oss::rule::SseAlgorithm;
use crate::oss::sign::{parse_query, percent_decode};
use crate::oss::xml::{RawRule, parse_rule, raw_rule_to_xml};

/// Which API a request is, for the counters.
pub(super) fn api_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GetBucketEncryption",
        Method::PUT => "PutBucketEncryption",
        Method::DELETE => "DeleteBucketEncryption",
        _ => "Unsupported",
    }
}

/// Where a request is addressed: bucket from the Host (virtual-hosted) or the path (path-style).
fn address(host: &str, path: &str) -> Result<(String, String), OssFault> {
    let host_only = host_without_port(host);
    let (bucket, rest) = if crate::oss::endpoint::is_path_style_host(host_only) {
        let trimmed = path.trim_start_matches('/');
        let (bucket, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        (bucket.to_owned(), rest.to_owned())
    } else {
        let (bucket, _) = host_only.split_once('.').unwrap_or(("", host_only));
        (bucket.to_owned(), path.trim_start_matches('/').to_owned())
    };
    if crate::oss::endpoint::validate_bucket_name(&bucket).is_err() {
        return Err(OssFault::new(
            400,
            "InvalidBucketName",
            "The specified bucket is not valid.",
            "0015-00000001",
        ));
    }
    Ok((bucket, rest))
}

/// The throttling or server error the configured faults inject into this request, if any.
fn injected_fault(state: &EmulatorState, over_qps: bool) -> Option<OssFault> {
    let faults = state.faults();
    if over_qps || (faults.throttle_rate > 0.0 && fastrand::f64() < faults.throttle_rate) {
        return Some(OssFault::throttled());
    }
    (faults.internal_error_rate > 0.0 && fastrand::f64() < faults.internal_error_rate)
        .then(OssFault::internal_error)
}

/// The request's headers as `(name, value)` pairs, as the signature checks read them (values
/// that are not text are left out).
pub(super) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned())))
        .collect()
}

/// The region an OSS hostname names: `[bucket.]oss-<region>[-internal].aliyuncs.com` or
/// `[bucket.]<region>.oss.aliyuncs.com`. `None` for IP addresses, localhost, a Kubernetes
/// Service name and the global `oss-accelerate[-overseas]` endpoints: those stand for any region.
fn endpoint_region(host: &str) -> Option<&str> {
    let base = host_without_port(host).strip_suffix(".aliyuncs.com")?;
    let mut labels = base.rsplit('.');
    match (labels.next()?, labels.next()) {
        ("oss", Some(region)) => Some(region),
        (last, _) => {
            let region = last.strip_prefix("oss-")?;
            let region = region.strip_suffix("-internal").unwrap_or(region);
            (!region.starts_with("accelerate")).then_some(region)
        }
    }
}

/// OSS's answer to a bucket addressed through another region's endpoint.
fn wrong_endpoint() -> OssFault {
    OssFault::access_denied(
        "The bucket you are attempting to access must be addressed using the specified endpoint. \
         Please send all future requests to this endpoint.",
    )
}

/// A V4 scope naming another region than the endpoint's (or than the bucket's).
fn signing_region_invalid() -> OssFault {
    OssFault::new(
        403,
        "SignatureDoesNotMatch",
        "The signing region in credential is invalid.",
        "0002-00000224",
    )
}

/// A request to the service itself (ListBuckets): `GET /` on a service host
/// (`oss-<region>[-internal].aliyuncs.com`) or on a path-style address (IP, localhost, Service).
fn is_service(host: &str, path: &str) -> bool {
    if !(path.is_empty() || path == "/") {
        return false;
    }
    let host = host_without_port(host);
    crate::oss::endpoint::is_path_style_host(host)
        || (host.starts_with("oss-") && host.matches('.').count() == 2)
}

/// ListBuckets: every bucket the emulator holds, all regions, names ascending, paged as OSS
/// pages (`prefix`, exclusive `marker`, `max-keys` 1..=1000 default 100; empty = absent).
fn list_buckets(
    state: &EmulatorState,
    method: &Method,
    raw_query: &str,
    headers: &HeaderMap,
    over_qps: bool,
) -> Answer {
    let fail = |fault: OssFault| (fault, String::new());
    if let Some(fault) = injected_fault(state, over_qps) {
        return Err(fail(fault));
    }
    if *method != Method::GET {
        return Err(fail(OssFault::new(
            405,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            "0000-00000000",
        )));
    }
    let query = parse_query(raw_query);
    let header_pairs = header_pairs(headers);
    let signed = SignedRequest {
        method: method.as_str(),
        bucket: None,
        key: None,
        query: &query,
        headers: &header_pairs,
    };
    // The listing covers every region, but a V4 scope must name the endpoint's region (an IP
    // endpoint stands for any region, yet the scope must still name one).
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
    let claimed = claimed_scope_region(&header_pairs);
    let region = match endpoint_region(host) {
        Some(region) => region.to_owned(),
        None if claimed.is_empty() || crate::oss::endpoint::validate_region(&claimed).is_ok() => claimed,
        None => return Err(fail(signing_region_invalid())),
    };
    let access_key_id = verify(state, &signed, &region).map_err(fail)?;
    if state.list_denied(&access_key_id) {
        return Err(fail(OssFault::access_denied(
            "You have no right to access this resource.",
        )));
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let max_keys = match param("max-keys") {
        "" => 100,
        text => match text.parse::<u32>() {
            Ok(n) if (1..=crate::oss::list::MAX_KEYS).contains(&n) => n,
            _ => {
                return Err(fail(OssFault::invalid_argument(
                    format!(
                        "max-keys must be between 1 and 1000, not {:?}.",
                        text.chars().take(20).collect::<String>()
                    ),
                    "0017-00000289",
                )));
            }
        },
    };
    let request = crate::oss::list::ListRequest {
        prefix: param("prefix").to_owned(),
        marker: param("marker").to_owned(),
        max_keys,
    };
    let page = state.list_page(&request);
    Ok((200, xml_response(200, crate::oss::list::to_xml(&page, &request))))
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// Serves one OSS request (everything that is not STS or admin).
pub async fn handle(
    state: Arc<EmulatorState>,
    method: Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = state.next_request_id();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let service = is_service(&host, path);
    let api = if service {
        "ListBuckets"
    } else {
        object_route(&method, &host, path, raw_query, headers).map_or_else(|| api_name(&method), Route::api)
    };

    let _serving = state.serving();
    let faults = state.faults();
    let jitter = if faults.latency_jitter_ms > 0 {
        fastrand::u64(..faults.latency_jitter_ms)
    } else {
        0
    };
    if faults.latency_ms + jitter > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms + jitter)).await;
    }
    let over_qps = state.arrive();
    if faults.reset_rate > 0.0 && fastrand::f64() < faults.reset_rate {
        state.count(api, 0);
        return connection_reset();
    }

    let answered = if service {
        list_buckets(&state, &method, raw_query, headers, over_qps)
    } else {
        answer(&state, &method, path, raw_query, headers, &body, over_qps).await
    };
    let (status, response) = match answered {
        Ok(ok) => ok,
        // A HEAD answer has no body: OSS puts the error document, base64, in `x-oss-err`.
        Err((fault, bucket)) if method == Method::HEAD => (
            fault.status,
            head_error_response(&fault, &request_id, &host, &bucket),
        ),
        Err((fault, bucket)) => (fault.status, error_response(&fault, &request_id, &host, &bucket)),
    };
    state.count(api, status);
    tracing::debug!(%method, path, api, status, request_id, "emulator answered");
    finish(response, &request_id, state.now())
}

type Answer = Result<(u16, Response), (OssFault, String)>;

/// The query as OSS reads it: a literal `+` is a space (oss2 sends spaces so; a `+` itself
/// arrives as `%2B`).
fn oss_query(raw_query: &str) -> Vec<(String, String)> {
    parse_query(&raw_query.replace('+', "%20"))
}

/// The object API a request is, if it is one (for the counters, before it is answered).
fn object_route(
    method: &Method,
    host: &str,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
) -> Option<Route> {
    let (_, object) = address(host, path).ok()?;
    Route::of(method, &percent_decode(&object), &oss_query(raw_query), headers)
}

async fn answer(
    state: &EmulatorState,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
    over_qps: bool,
) -> Answer {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
    let (bucket, object) = address(host, path).map_err(|f| (f, String::new()))?;
    let object = percent_decode(&object);
    state.count_bucket(&bucket);
    let fail = |fault: OssFault| (fault, bucket.clone());

    if let Some(fault) = injected_fault(state, over_qps) {
        return Err(fail(fault));
    }

    let query = oss_query(raw_query);
    let route = Route::of(method, &object, &query, headers);
    if route.is_none() && (!object.is_empty() || !query.iter().any(|(k, _)| k == "encryption")) {
        return Err(fail(OssFault::new(
            501,
            "NotImplemented",
            "The OSS emulator implements only the bucket ?encryption APIs, ListObjectsV2, and \
             PutObject, HeadObject and CopyObject.",
            "0000-00000000",
        )));
    }
    if route.is_none() && !matches!(*method, Method::GET | Method::PUT | Method::DELETE) {
        return Err(fail(OssFault::new(
            405,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            "0000-00000000",
        )));
    }

    // OSS authenticates against the bucket's region, so an unknown bucket is answered after the
    // signature is checked with the scope it claims; a missing bucket is still NoSuchBucket.
    let stored = state.bucket(&bucket);
    let header_pairs = header_pairs(headers);
    let signed = SignedRequest {
        method: method.as_str(),
        bucket: Some(&bucket),
        key: Some(object.as_str()).filter(|k| !k.is_empty()),
        query: &query,
        headers: &header_pairs,
    };
    let claimed_region = stored.as_ref().map(|b| b.region.clone());
    // A regional endpoint serves only its region's buckets, whatever the signature version.
    if let (Some(bucket_region), Some(endpoint)) = (&claimed_region, endpoint_region(host))
        && endpoint != bucket_region
    {
        return Err(fail(wrong_endpoint()));
    }
    let access_key_id = match &claimed_region {
        Some(region) => verify(state, &signed, region).map_err(fail)?,
        None => {
            // Verify with whatever region the request claims, then report the missing bucket.
            verify(state, &signed, &claimed_scope_region(&header_pairs)).map_err(fail)?;
            return Err(fail(OssFault::no_such_bucket()));
        }
    };
    let stored = stored.expect("bucket checked above");
    if stored.denied_access_keys.contains_key(&access_key_id) {
        return Err(fail(OssFault::access_denied(
            "You have no right to access this bucket.",
        )));
    }
    if let Some(route) = route {
        let request = super::objects::ObjectRequest {
            bucket_name: &bucket,
            bucket: &stored,
            key: &object,
            query: &query,
            headers,
            body,
        };
        return super::objects::answer(state, route, request).map_err(fail);
    }

    match *method {
        Method::GET => match &stored.rule {
            Some(rule) => Ok((200, xml_response(200, raw_rule_to_xml(&RawRule::from(rule))))),
            None => Err(fail(OssFault::new(
                404,
                "NoSuchServerSideEncryptionRule",
                "The bucket you specified does not have server side encryption rule.",
                "0005-00000004",
            ))),
        },
        Method::PUT => {
            let rule = validate_put(headers, body).map_err(fail)?;
            persist(state, &bucket, Some(rule)).await.map_err(fail)?;
            Ok((200, empty_response(200)))
        }
        _ => {
            persist(state, &bucket, None).await.map_err(fail)?;
            Ok((204, empty_response(204)))
        }
    }
}

/// Stores a rule; a write that cannot be persisted is not acknowledged (500, state unchanged).
/// The answer waits until the write is durable (group commit with other writes).
async fn persist(state: &EmulatorState, bucket: &str, rule: Option<StoredRule>) -> Result<(), OssFault> {
    state
        .try_set_rule(bucket, rule)
        .await
        .map(|_| ())
        .map_err(|error| {
            tracing::error!(%error, bucket, "the emulator could not persist a write; refused");
            OssFault::internal_error()
        })
}

/// The region a V4 Authorization claims (V1 has none; any value then).
fn claimed_scope_region(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| match crate::oss::sign::parse_authorization(v) {
            Ok(crate::oss::sign::ParsedAuthorization::V4 { scope, .. }) => Some(scope.region),
            _ => None,
        })
        .unwrap_or_default()
}

/// The checks OSS makes on a PutBucketEncryption body, in its order.
fn validate_put(headers: &HeaderMap, body: &Bytes) -> Result<StoredRule, OssFault> {
    if let Some(md5) = headers.get("content-md5").and_then(|v| v.to_str().ok())
        && md5.trim() != content_md5(body)
    {
        return Err(OssFault::new(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified is not valid.",
            "0002-00000016",
        ));
    }
    let malformed = || {
        OssFault::new(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema.",
            "0005-00000001",
        )
    };
    let text = std::str::from_utf8(body).map_err(|_| malformed())?;
    let raw = parse_rule(text).map_err(|_| malformed())?;
    let Some(algorithm) = SseAlgorithm::parse(raw.algorithm.trim()) else {
        return Err(OssFault::new(
            400,
            "InvalidEncryptionAlgorithmError",
            "The Encryption request you specified is not valid. Supported value: AES256/KMS/SM4",
            "0005-00000003",
        ));
    };
    if algorithm != SseAlgorithm::Kms && !raw.kms_master_key_id.trim().is_empty() {
        return Err(OssFault::invalid_argument(
            "KMSMasterKeyID is not applicable if the default sse algorithm is not KMS",
            "0005-00000204",
        ));
    }
    let data = raw.kms_data_encryption.trim();
    if !data.is_empty() && (algorithm != SseAlgorithm::Kms || data != "SM4") {
        return Err(OssFault::invalid_argument(
            "KMSDataEncryption is only valid with KMS and must be SM4",
            "0005-00000203",
        ));
    }
    Ok(StoredRule {
        algorithm: algorithm.as_str().to_owned(),
        kms_master_key_id: raw.kms_master_key_id.trim().to_owned(),
        kms_data_encryption: data.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_hosts_name_their_region() {
        for (host, region) in [
            ("b1b.oss-cn-hangzhou.aliyuncs.com", Some("cn-hangzhou")),
            ("oss-cn-hangzhou.aliyuncs.com:443", Some("cn-hangzhou")),
            (
                "b1b.oss-ap-southeast-1-internal.aliyuncs.com",
                Some("ap-southeast-1"),
            ),
            ("b1b.cn-shanghai.oss.aliyuncs.com", Some("cn-shanghai")),
            ("b1b.oss-accelerate.aliyuncs.com", None),
            ("127.0.0.1:9000", None),
            ("oss-emulator.demo.svc", None),
        ] {
            assert_eq!(endpoint_region(host), region, "{host}");
        }
    }

    #[test]
    fn addressing() {
        assert_eq!(
            address("b1b.oss-cn-hangzhou.aliyuncs.com", "/").unwrap(),
            ("b1b".into(), "".into())
        );
        assert_eq!(
            address("127.0.0.1:9000", "/b1b/").unwrap(),
            ("b1b".into(), "".into())
        );
        assert_eq!(address("[::1]:9000", "/b1b/").unwrap(), ("b1b".into(), "".into()));
        assert_eq!(
            address("localhost:1", "/b1b/obj").unwrap(),
            ("b1b".into(), "obj".into())
        );
        assert!(address("127.0.0.1:9000", "/").is_err());
        // In a cluster (deploy/demo) the emulator is a Service, addressed path-style.
        assert_eq!(
            address(
                "oss-emulator.oss-encryption-operator.svc:9000",
                "/audit-logs-prod/"
            )
            .unwrap(),
            ("audit-logs-prod".into(), "".into())
        );
        assert!(is_service("oss-emulator.oss-encryption-operator.svc:9000", "/"));
    }

    #[test]
    fn put_validation_in_oss_order() {
        let mut headers = HeaderMap::new();
        let body = |xml: &str| Bytes::from(xml.to_owned());
        let rule = |inner: &str| {
            format!(
                "<ServerSideEncryptionRule><ApplyServerSideEncryptionByDefault>{inner}</ApplyServerSideEncryptionByDefault></ServerSideEncryptionRule>"
            )
        };
        let code = |headers: &HeaderMap, xml: &str| {
            validate_put(headers, &body(xml))
                .map(|_| "OK")
                .unwrap_or_else(|f| f.code)
        };
        assert_eq!(code(&headers, "<nope"), "MalformedXML");
        assert_eq!(
            code(&headers, &rule("<SSEAlgorithm>DES</SSEAlgorithm>")),
            "InvalidEncryptionAlgorithmError"
        );
        assert_eq!(
            code(
                &headers,
                &rule("<SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>")
            ),
            "InvalidArgument"
        );
        assert_eq!(
            code(
                &headers,
                &rule("<SSEAlgorithm>KMS</SSEAlgorithm><KMSDataEncryption>abc</KMSDataEncryption>")
            ),
            "InvalidArgument"
        );
        assert_eq!(code(&headers, &rule("<SSEAlgorithm>SM4</SSEAlgorithm>")), "OK");
        headers.insert("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==".parse().unwrap());
        assert_eq!(
            code(&headers, &rule("<SSEAlgorithm>SM4</SSEAlgorithm>")),
            "InvalidDigest"
        );
    }
}
