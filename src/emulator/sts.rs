//! STS `AssumeRoleWithOIDC`, enough for RRSA: the OIDC token is checked against the accepted
//! tokens and a temporary key pair with a security token is issued and made valid for OSS.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use jiff::SignedDuration;

use super::state::{EmulatorState, StsSession};
use crate::oss::sign::parse_query;

/// True when a request is an STS call (`Action=AssumeRoleWithOIDC` in the query or the form).
pub fn is_sts(raw_query: &str) -> bool {
    parse_query(raw_query).iter().any(|(k, _)| k == "Action")
}

fn json(status: u16, value: serde_json::Value) -> Response {
    let mut response = Response::new(axum::body::Body::from(value.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn sts_error(status: u16, code: &str, message: &str, request_id: &str) -> Response {
    json(
        status,
        serde_json::json!({
            "RequestId": request_id, "HostId": "sts.aliyuncs.com", "Code": code, "Message": message,
        }),
    )
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Serves `AssumeRoleWithOIDC` (GET with a query or POST with a form body, as the SDKs send it).
pub async fn handle(state: Arc<EmulatorState>, raw_query: &str, body: Bytes) -> Response {
    let request_id = state.next_request_id();
    let faults = state.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let mut params = parse_query(raw_query);
    // Form bodies encode spaces as '+'.
    params.extend(parse_query(&String::from_utf8_lossy(&body).replace('+', "%20")));
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let response = answer(&state, &get, &request_id);
    state.count("AssumeRoleWithOIDC", response.status().as_u16());
    response
}

fn answer(state: &EmulatorState, get: &impl Fn(&str) -> String, request_id: &str) -> Response {
    if get("Action") != "AssumeRoleWithOIDC" {
        return sts_error(
            400,
            "InvalidAction.NotFound",
            "Specified api is not found.",
            request_id,
        );
    }
    for required in ["RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"] {
        if get(required).is_empty() {
            return sts_error(
                400,
                &format!("MissingParameter.{required}"),
                &format!(
                    "The input parameter \"{required}\" that is mandatory for processing this request is not supplied."
                ),
                request_id,
            );
        }
    }
    if !state.check_oidc_token(&get("OIDCToken")) {
        return sts_error(
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDC token is invalid.",
            request_id,
        );
    }
    let asked = get("DurationSeconds")
        .parse::<u64>()
        .unwrap_or(3600)
        .clamp(900, 43_200);
    let lifetime = state
        .sts_duration_override()
        .unwrap_or(Duration::from_secs(asked));
    let expiration = state
        .now()
        .checked_add(SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::from_secs(3600)))
        .unwrap_or_else(|_| state.now());
    let access_key_id = format!("STS.{}", random_token(24));
    let session = StsSession {
        secret: random_token(40),
        token: format!("CAIS{}", random_token(60)),
        expiration,
    };
    state.add_sts_session(access_key_id.clone(), session.clone());
    json(
        200,
        serde_json::json!({
            "RequestId": request_id,
            "AssumedRoleUser": {"Arn": format!("{}/{}", get("RoleArn"), get("RoleSessionName")), "AssumedRoleId": "300000000000000000:session"},
            "Credentials": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": session.secret,
                "SecurityToken": session.token,
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
        }),
    )
}
