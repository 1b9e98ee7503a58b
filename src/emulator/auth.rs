//! Signature verification as OSS does it: V1 and V4, STS tokens, the 15-minute skew window.
//! The expected signature is computed with the same pure functions the client signs with.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::reply::OssFault;
use super::state::EmulatorState;
use crate::oss::sign::{
    ParsedAuthorization, RequestParts, UNSIGNED_PAYLOAD, constant_time_eq, parse_authorization,
    parse_http_date, parse_iso8601_basic, v1_signature, v1_string_to_sign, v4_additional_headers,
    v4_canonical_request, v4_signature, v4_string_to_sign,
};

/// Requests further than this from the server's clock are refused (`RequestTimeTooSkewed`).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The request as the verifier needs it.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// `None` for service-level requests (ListBuckets).
    pub bucket: Option<&'a str>,
    /// The object key (decoded), for object requests.
    pub key: Option<&'a str>,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
}

/// Checks the Authorization header; returns the caller's access key id.
pub fn verify(
    state: &EmulatorState,
    request: &SignedRequest<'_>,
    bucket_region: &str,
) -> Result<String, OssFault> {
    let parts = RequestParts {
        method: request.method,
        bucket: request.bucket,
        key: request.key,
        query: request.query,
        headers: request.headers,
    };
    let Some(authorization) = parts.header("authorization") else {
        return Err(OssFault::access_denied(
            "AccessDenied: anonymous access is forbidden for this operation.",
        ));
    };
    let parsed = parse_authorization(authorization).map_err(|e| {
        OssFault::invalid_argument(format!("Authorization header is invalid: {e}"), "0002-00000020")
    })?;
    let access_key_id = match &parsed {
        ParsedAuthorization::V1 { access_key_id, .. } | ParsedAuthorization::V4 { access_key_id, .. } => {
            access_key_id.clone()
        }
    };
    let Some((secret, session)) = state.lookup_key(&access_key_id) else {
        return Err(OssFault::new(
            403,
            "InvalidAccessKeyId",
            "The OSS Access Key Id you provided does not exist in our records.",
            "0002-00000902",
        ));
    };

    let request_time = match &parsed {
        ParsedAuthorization::V1 { .. } => parts
            .header("x-oss-date")
            .or_else(|| parts.header("date"))
            .and_then(parse_http_date)
            .ok_or_else(|| OssFault::access_denied("The request has no valid Date or x-oss-date header."))?,
        ParsedAuthorization::V4 { .. } => parts
            .header("x-oss-date")
            .and_then(parse_iso8601_basic)
            .ok_or_else(|| {
                OssFault::access_denied("The x-oss-date header is missing or not in ISO 8601 basic format.")
            })?,
    };
    check_skew(state.now(), request_time)?;
    check_security_token(&parts, session.as_ref(), state.now())?;

    match parsed {
        ParsedAuthorization::V1 { signature, .. } => {
            let string_to_sign = v1_string_to_sign(&parts);
            if !constant_time_eq(&signature, &v1_signature(&secret, &string_to_sign)) {
                return Err(OssFault::signature_does_not_match(string_to_sign, &access_key_id));
            }
        }
        ParsedAuthorization::V4 {
            scope,
            additional_headers,
            signature,
            ..
        } => {
            let oss_date = parts.header("x-oss-date").unwrap_or_default();
            if parts.header("x-oss-content-sha256") != Some(UNSIGNED_PAYLOAD) {
                return Err(OssFault::invalid_argument(
                    "Change the value of the x-oss-content-sha256 header to UNSIGNED-PAYLOAD.",
                    "0002-00000214",
                ));
            }
            if scope.date != oss_date[..8.min(oss_date.len())] || scope.product != "oss" {
                return Err(OssFault::invalid_argument(
                    "Invalid credential in Authorization header.",
                    "0002-00000203",
                ));
            }
            if scope.region != bucket_region {
                return Err(OssFault::new(
                    403,
                    "SignatureDoesNotMatch",
                    "The signing region in credential is invalid.",
                    "0002-00000224",
                ));
            }
            let additional = v4_additional_headers(&parts, &additional_headers);
            let string_to_sign =
                v4_string_to_sign(oss_date, &scope, &v4_canonical_request(&parts, &additional));
            if !constant_time_eq(&signature, &v4_signature(&secret, &scope, &string_to_sign)) {
                return Err(OssFault::signature_does_not_match(string_to_sign, &access_key_id));
            }
        }
    }
    Ok(access_key_id)
}

fn check_skew(server_now: Timestamp, request_time: Timestamp) -> Result<(), OssFault> {
    let skew = server_now.duration_since(request_time).abs();
    if skew > SignedDuration::try_from(MAX_SKEW).unwrap_or(SignedDuration::MAX) {
        return Err(OssFault::new(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            "0002-00000504",
        ));
    }
    Ok(())
}

/// Temporary keys need their own token, unexpired; long-lived keys must not send one.
fn check_security_token(
    parts: &RequestParts<'_>,
    session: Option<&super::state::StsSession>,
    now: Timestamp,
) -> Result<(), OssFault> {
    let sent = parts.header("x-oss-security-token");
    let invalid =
        |message: &str| OssFault::new(403, "InvalidSecurityToken", message.to_owned(), "0002-00000008");
    match (session, sent) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(invalid("The security token you provided is invalid.")),
        (Some(_), None) => Err(invalid("The security token you provided is invalid.")),
        (Some(session), Some(token)) if !constant_time_eq(&session.token, token) => Err(OssFault::new(
            403,
            "AccessKeyIdAndSecurityTokenNotMatch",
            "The OSS access key id and security token you provided does not match.",
            "0002-00000006",
        )),
        (Some(session), Some(_)) if session.expiration <= now => Err(OssFault::new(
            403,
            "InvalidSecurityToken",
            "The security token you provided has expired.",
            "0002-00000007",
        )),
        (Some(_), Some(_)) => Ok(()),
    }
}
