//! KMS `DescribeKey` (API 2016-01-20) as the official SDK calls it: routed by the `x-acs-action`
//! header or the `Action` parameter; ACS3-HMAC-SHA256 (canonical headers rebuilt from the
//! `SignedHeaders` the caller sent), ACS4 and RPC HMAC-SHA1 verified with STS tokens and a
//! 15-minute clock window; JSON answers and error codes as `kms-wire-facts.md` gives them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use jiff::Timestamp;

use super::auth::MAX_SKEW;
use super::state::EmulatorState;
use crate::kms::sign;
use crate::oss::sign::constant_time_eq;

/// The KMS actions the emulator serves.
const ACTIONS: &[&str] = &["DescribeKey"];

/// True when a request is a KMS call: an `x-acs-action` header, or an RPC `Action` naming a KMS
/// action (STS shares the `Action` parameter).
pub fn is_kms(headers: &HeaderMap, raw_query: &str) -> bool {
    headers.contains_key("x-acs-action")
        || sign::parse_form_query(raw_query)
            .iter()
            .any(|(k, v)| k == "Action" && ACTIONS.contains(&v.as_str()))
}

/// An error answer: status, code, message.
struct Fault(u16, &'static str, String);

fn json(status: u16, value: &serde_json::Value, request_id: &str, now: Timestamp) -> Response {
    let mut response = Response::new(axum::body::Body::from(value.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-acs-request-id", value);
    }
    // The gateway's clock, from which clients correct their own (as for OSS).
    if let Ok(value) = HeaderValue::from_str(&crate::oss::sign::http_date(now)) {
        headers.insert("date", value);
    }
    response
}

/// Serves one KMS request.
pub async fn handle(
    state: Arc<EmulatorState>,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let request_id = uuid_like();
    let faults = state.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let result = if fastrand::f64() < faults.kms_throttle_rate {
        Err(Fault(
            400,
            "Throttling",
            "Request was denied due to request throttling.".into(),
        ))
    } else if fastrand::f64() < faults.kms_error_rate {
        Err(Fault(
            503,
            "ServiceUnavailableTemporary",
            "The service is temporarily unavailable.".into(),
        ))
    } else {
        answer(&state, method, path, raw_query, headers, body)
    };
    let response = match result {
        Ok(metadata) => json(
            200,
            &serde_json::json!({"KeyMetadata": metadata, "RequestId": request_id}),
            &request_id,
            state.now(),
        ),
        Err(Fault(status, code, message)) => json(
            status,
            &serde_json::json!({
                "RequestId": request_id, "HostId": "kms.aliyuncs.com", "Code": code, "Message": message,
                "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}"),
            }),
            &request_id,
            state.now(),
        ),
    };
    state.count("DescribeKey", response.status().as_u16());
    response
}

/// KMS request ids are UUIDs.
fn uuid_like() -> String {
    let hex = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The first value of a (decoded) parameter, or empty.
fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn answer(
    state: &EmulatorState,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Value, Fault> {
    if *method != Method::POST && *method != Method::GET {
        return Err(Fault(
            403,
            "UnsupportedHTTPMethod",
            "This http method is not supported.".into(),
        ));
    }
    let mut params = sign::parse_form_query(raw_query);
    if header(headers, "content-type").starts_with("application/x-www-form-urlencoded") {
        params.extend(sign::parse_form_query(&String::from_utf8_lossy(body)));
    }
    let param = |name: &str| param(&params, name);
    let action = match header(headers, "x-acs-action") {
        "" => param("Action"),
        action => action,
    };
    if !ACTIONS.contains(&action) {
        return Err(Fault(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found.".into(),
        ));
    }
    let access_key_id = if param("Signature").is_empty() {
        verify_v3(state, method, path, &params, headers, body)?
    } else {
        verify_rpc(state, method, &params)?
    };
    if state.kms_denied(&access_key_id) {
        return Err(Fault(
            403,
            "Forbidden.NoPermission",
            "This operation is forbidden by permission system.".into(),
        ));
    }
    let key_id = param("KeyId");
    if key_id.is_empty() {
        return Err(Fault(
            400,
            "MissingParameter",
            "The parameter \"KeyId\" is needed but not provided.".into(),
        ));
    }
    let not_found = || {
        if key_id.starts_with("alias/") {
            Fault(
                404,
                "Forbidden.AliasNotFound",
                "The specified Alias is not found.".into(),
            )
        } else {
            Fault(
                404,
                "Forbidden.KeyNotFound",
                "The specified Key is not found.".into(),
            )
        }
    };
    let (id, key) = state.find_kms_key(key_id).ok_or_else(not_found)?;
    // A regional gateway only knows its region's keys (a loopback address serves every region).
    if let Some(region) = gateway_region(header(headers, "host"))
        && region != key.region
    {
        return Err(not_found());
    }
    Ok(serde_json::json!({
        "KeyId": id,
        "Arn": format!("acs:kms:{}:{}:key/{id}", key.region, key.account),
        "KeyState": key.state,
        "KeySpec": key.spec,
        "KeyUsage": key.usage,
        "Origin": "Aliyun_KMS",
        "ProtectionLevel": "SOFTWARE",
        "CreationDate": "2026-01-01T00:00:00Z",
        "Creator": key.account,
        "Description": "",
        "DeleteDate": if key.state == "PendingDeletion" { "2026-12-31T00:00:00Z" } else { "" },
        "AutomaticRotation": "Disabled",
        "DeletionProtection": "Disabled",
    }))
}

/// `kms.<region>.aliyuncs.com` / `kms-vpc.<region>.aliyuncs.com` → the region.
fn gateway_region(host: &str) -> Option<&str> {
    let host = host.split(':').next().unwrap_or(host);
    let rest = host
        .strip_prefix("kms-vpc.")
        .or_else(|| host.strip_prefix("kms."))?;
    rest.strip_suffix(".aliyuncs.com")
}

/// The caller's secret, after checking the key id and (for STS keys) the token.
fn secret_of(state: &EmulatorState, access_key_id: &str, token: &str) -> Result<String, Fault> {
    let (secret, session) = state.lookup_key(access_key_id).ok_or_else(|| {
        Fault(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.".into(),
        )
    })?;
    if let Some(session) = session {
        if token.is_empty() {
            return Err(Fault(
                400,
                "MissingSecurityToken",
                "SecurityToken is mandatory for this action.".into(),
            ));
        }
        if !constant_time_eq(token, &session.token) {
            return Err(Fault(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The security token does not match the access key.".into(),
            ));
        }
        // Judged by the emulator's clock, as the skew window is.
        if session.expiration <= state.now() {
            return Err(Fault(
                400,
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.".into(),
            ));
        }
    }
    Ok(secret)
}

/// The 15-minute window around the emulator's clock.
fn check_time(state: &EmulatorState, value: &str) -> Result<(), Fault> {
    let expired = || {
        Fault(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.".into(),
        )
    };
    let at: Timestamp = value.parse().map_err(|_| expired())?;
    let skew = state.now().duration_since(at).abs();
    if skew.as_secs() as u64 > MAX_SKEW.as_secs() {
        return Err(expired());
    }
    Ok(())
}

/// ACS3-HMAC-SHA256 or ACS4-HMAC-SHA256 in the `Authorization` header.
fn verify_v3(
    state: &EmulatorState,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<String, Fault> {
    let authorization = header(headers, "authorization");
    if authorization.is_empty() {
        return Err(Fault(
            400,
            "MissingAuthorization",
            "Authorization is mandatory for this action.".into(),
        ));
    }
    let parsed = sign::parse_authorization(authorization).ok_or_else(|| {
        Fault(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.".into(),
        )
    })?;
    let payload_hash = sign::sha256_hex(body);
    let sent_hash = header(headers, "x-acs-content-sha256");
    if !sent_hash.is_empty() && sent_hash != payload_hash {
        return Err(Fault(
            400,
            "InvalidParameter",
            "The specified parameter \"x-acs-content-sha256\" is not valid.".into(),
        ));
    }
    // The date and the nonce are what make a signature single-use: both must be signed (both
    // SDKs sign every `x-acs-*` header; the doc: every common header but Authorization).
    let security_token = header(headers, "x-acs-security-token");
    let signed = |name: &str| parsed.signed_headers.iter().any(|h| h == name);
    if header(headers, "x-acs-signature-nonce").is_empty()
        || !signed("x-acs-date")
        || !signed("x-acs-signature-nonce")
        || (!security_token.is_empty() && !signed("x-acs-security-token"))
    {
        return Err(Fault(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.".into(),
        ));
    }
    check_time(state, header(headers, "x-acs-date"))?;
    let secret = secret_of(
        state,
        &parsed.access_key_id,
        header(headers, "x-acs-security-token"),
    )?;
    let pairs = super::api::header_pairs(headers);
    let canonical = sign::canonical_request(&sign::Request {
        method: method.as_str(),
        path,
        query: params,
        headers: &pairs,
        signed_headers: &parsed.signed_headers,
        payload_hash: &payload_hash,
    });
    let string_to_sign = sign::string_to_sign(&parsed.algorithm, &canonical);
    let expected = match &parsed.scope {
        None => sign::acs3_signature(&secret, &string_to_sign),
        Some((date, region, product)) => {
            sign::acs4_signature(&secret, (date, region, product), &string_to_sign)
        }
    };
    if !constant_time_eq(&expected, &parsed.signature) {
        return Err(Fault(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature does not match our calculation. server StringToSign is [{string_to_sign}]"
            ),
        ));
    }
    use_nonce(state, header(headers, "x-acs-signature-nonce"))?;
    Ok(parsed.access_key_id)
}

/// RPC HMAC-SHA1: everything in the query, `Signature` over the sorted rest.
fn verify_rpc(state: &EmulatorState, method: &Method, params: &[(String, String)]) -> Result<String, Fault> {
    let param = |name: &str| param(params, name);
    for required in ["AccessKeyId", "SignatureNonce", "Timestamp"] {
        if param(required).is_empty() {
            return Err(Fault(
                400,
                "MissingParameter",
                format!("The parameter \"{required}\" is needed but not provided."),
            ));
        }
    }
    check_time(state, param("Timestamp"))?;
    let secret = secret_of(state, param("AccessKeyId"), param("SecurityToken"))?;
    let string_to_sign = sign::rpc_string_to_sign(method.as_str(), params);
    if !constant_time_eq(&sign::rpc_signature(&secret, &string_to_sign), param("Signature")) {
        return Err(Fault(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        ));
    }
    use_nonce(state, param("SignatureNonce"))?;
    Ok(param("AccessKeyId").to_owned())
}

/// A nonce is good once (remembered only for signatures that verified, so a flood of bad
/// requests leaves nothing behind).
fn use_nonce(state: &EmulatorState, nonce: &str) -> Result<(), Fault> {
    if state.use_nonce(nonce) {
        Ok(())
    } else {
        Err(Fault(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_hosts_name_their_region() {
        assert_eq!(
            gateway_region("kms.cn-hangzhou.aliyuncs.com"),
            Some("cn-hangzhou")
        );
        assert_eq!(
            gateway_region("kms-vpc.ap-southeast-1.aliyuncs.com:443"),
            Some("ap-southeast-1")
        );
        assert_eq!(gateway_region("127.0.0.1:8080"), None);
    }
}
