//! The DescribeKey request as the client sends it, built as a pure function of its inputs (so the
//! official SDK's vectors can pin time, nonce and User-Agent and compare the result byte for byte).

use super::sign::{self, EMPTY_SHA256, Request};
use crate::oss::Credentials;

/// The KMS API version every call names.
pub const VERSION: &str = "2016-01-20";

/// What varies between two DescribeKey requests.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub credentials: &'a Credentials,
    /// `host[:port]` exactly as the `Host` header carries it.
    pub host: &'a str,
    pub key_id: &'a str,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: &'a str,
    /// 32 lower-case hex digits, fresh per request.
    pub nonce: &'a str,
    pub user_agent: &'a str,
}

/// A signed request: the query (decoded; sent in its canonical encoding) and every header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Signed {
    /// The query string as sent: the canonical encoding, which decodes the same everywhere.
    pub fn query_string(&self) -> String {
        sign::canonical_query(&self.query)
    }
}

/// `POST /?KeyId=…` with the official SDK's headers, all of them signed (ACS3-HMAC-SHA256); with
/// an STS token, `x-acs-accesskey-id` and `x-acs-security-token` are added before signing.
pub fn describe_key(inputs: &Inputs<'_>) -> Signed {
    let credentials = inputs.credentials;
    let provider = if credentials.security_token().is_some() {
        "static_sts"
    } else {
        "static_ak"
    };
    let mut headers: Vec<(String, String)> = [
        ("host", inputs.host),
        ("x-acs-version", VERSION),
        ("x-acs-action", "DescribeKey"),
        ("user-agent", inputs.user_agent),
        ("x-acs-date", inputs.date),
        ("x-acs-signature-nonce", inputs.nonce),
        ("accept", "application/json"),
        ("x-acs-content-sha256", EMPTY_SHA256),
        ("x-acs-credentials-provider", provider),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(token) = credentials.security_token() {
        headers.push(("x-acs-accesskey-id".into(), credentials.access_key_id().into()));
        headers.push(("x-acs-security-token".into(), token.into()));
    }
    let query = vec![("KeyId".to_owned(), inputs.key_id.to_owned())];
    let signed_names: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
    let canonical = sign::canonical_request(&Request {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        signed_headers: &signed_names,
        payload_hash: EMPTY_SHA256,
    });
    let (_, signed_list) = sign::canonical_headers(&headers, &signed_names);
    let signature = sign::acs3_signature(
        credentials.access_key_secret(),
        &sign::string_to_sign(sign::ACS3, &canonical),
    );
    headers.push((
        "Authorization".into(),
        sign::acs3_authorization(credentials.access_key_id(), &signed_list, &signature),
    ));
    Signed { query, headers }
}
