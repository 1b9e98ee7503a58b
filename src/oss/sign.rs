//! OSS request signing, V1 (`OSS ak:sig`, HMAC-SHA1) and V4 (`OSS4-HMAC-SHA256`).
//!
//! Everything here is a pure function of the request's parts, the signing time and the credentials,
//! so the client (which signs) and the emulator (which verifies) share one implementation, and the
//! official vectors in `shared/testdata/oss-signing-vectors.json` pin it byte for byte.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::credentials::Credentials;

/// The V4 algorithm name, first word of the Authorization header.
pub const V4_ALGORITHM: &str = "OSS4-HMAC-SHA256";
/// Value of `x-oss-content-sha256`: OSS signs headers, not payloads.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The V4 product for public OSS (CloudBox uses `oss-cloudbox`).
pub const PRODUCT_OSS: &str = "oss";

/// Which OSS signature scheme a request uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SignatureVersion {
    /// `OSS <AccessKeyId>:<base64 hmac-sha1>`.
    V1,
    /// `OSS4-HMAC-SHA256 Credential=…,Signature=…` (the official SDKs' default).
    #[default]
    V4,
}

/// Query parameters that V1 signs (oss2's sub-resource whitelist; any `x-oss-` key is signed too).
const V1_SIGNED_SUBRESOURCES: &[&str] = &[
    "acl",
    "append",
    "asyncFetch",
    "bucketInfo",
    "callback",
    "callback-var",
    "cname",
    "comp",
    "continuation-token",
    "cors",
    "delete",
    "encryption",
    "endTime",
    "group",
    "inventory",
    "inventoryId",
    "lifecycle",
    "link",
    "live",
    "location",
    "logging",
    "metaQuery",
    "objectInfo",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "qos",
    "qosInfo",
    "referer",
    "regionList",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "requestPayment",
    "resourceGroup",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "startTime",
    "stat",
    "status",
    "style",
    "styleName",
    "symlink",
    "tagging",
    "transferAcceleration",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "worm",
    "wormExtend",
    "wormId",
];

/// The parts of an HTTP request that a signature covers.
///
/// `query` holds decoded `(key, value)` pairs (value empty for a bare key); `headers` holds
/// `(name, value)` pairs as sent, names in any case.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
}

impl RequestParts<'_> {
    /// The first header with this name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// `/bucket/key` as OSS uses it in both canonical forms (bucket op → `/bucket/`, no bucket → `/`).
    fn resource_path(&self) -> String {
        match self.bucket {
            Some(bucket) => format!("/{bucket}/{}", self.key.unwrap_or("")),
            None => "/".to_owned(),
        }
    }
}

/// The V4 credential scope: `<yyyymmdd>/<region>/<product>/aliyun_v4_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub date: String,
    pub region: String,
    pub product: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/aliyun_v4_request",
            self.date, self.region, self.product
        )
    }
}

/// RFC 1123 date as OSS wants it in `Date`: `Mon, 01 Jan 2024 00:00:00 GMT`.
pub fn http_date(at: Timestamp) -> String {
    at.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// ISO 8601 basic UTC time for `x-oss-date` in V4: `20240101T000000Z`.
pub fn iso8601_basic(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Parses an RFC 1123 `Date` header (`Mon, 01 Jan 2024 00:00:00 GMT`).
pub fn parse_http_date(value: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value.trim())
        .ok()
}

/// Parses a V4 `x-oss-date` (`20240101T000000Z`).
pub fn parse_iso8601_basic(value: &str) -> Option<Timestamp> {
    let value = value.trim().strip_suffix('Z')?;
    let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S", value).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// What a request is addressed to, for [`sign`].
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub method: &'a str,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    pub query: &'a [(String, String)],
    /// Region id for the V4 scope (unused by V1).
    pub region: &'a str,
}

/// Adds the headers a signature needs (`Date`, `x-oss-date`, `x-oss-content-sha256`,
/// `x-oss-security-token`) and returns the `Authorization` value.
///
/// `headers` must already hold `Content-Type`/`Content-MD5` when the request sends them.
pub fn sign(
    version: SignatureVersion,
    credentials: &Credentials,
    target: Target<'_>,
    headers: &mut Vec<(String, String)>,
    at: Timestamp,
) -> String {
    headers.push(("Date".to_owned(), http_date(at)));
    let oss_date = iso8601_basic(at);
    if version == SignatureVersion::V4 {
        headers.push(("x-oss-date".to_owned(), oss_date.clone()));
        headers.push(("x-oss-content-sha256".to_owned(), UNSIGNED_PAYLOAD.to_owned()));
    }
    if let Some(token) = credentials.security_token() {
        headers.push(("x-oss-security-token".to_owned(), token.to_owned()));
    }
    let parts = RequestParts {
        method: target.method,
        bucket: target.bucket,
        key: target.key,
        query: target.query,
        headers,
    };
    match version {
        SignatureVersion::V1 => v1_authorization(
            credentials.access_key_id(),
            credentials.access_key_secret(),
            &v1_string_to_sign(&parts),
        ),
        SignatureVersion::V4 => {
            let scope = Scope {
                date: oss_date[..8].to_owned(),
                region: target.region.to_owned(),
                product: PRODUCT_OSS.to_owned(),
            };
            v4_authorization(
                credentials.access_key_id(),
                credentials.access_key_secret(),
                &parts,
                &scope,
                &oss_date,
                &[],
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// V1
// ---------------------------------------------------------------------------------------------

/// `CanonicalizedResource`: `/bucket/key` plus the signed sub-resources, sorted, raw values.
pub fn v1_canonical_resource(parts: &RequestParts<'_>) -> String {
    let mut signed: Vec<String> = parts
        .query
        .iter()
        .filter(|(k, _)| V1_SIGNED_SUBRESOURCES.contains(&k.as_str()) || k.starts_with("x-oss-"))
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    signed.sort();
    let mut resource = parts.resource_path();
    if !signed.is_empty() {
        resource.push('?');
        resource.push_str(&signed.join("&"));
    }
    resource
}

/// `CanonicalizedOSSHeaders`: every `x-oss-*` header, lower-cased, sorted, `name:value\n`.
fn v1_canonical_oss_headers(parts: &RequestParts<'_>) -> String {
    let mut headers: Vec<(String, &str)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| k.starts_with("x-oss-"))
        .collect();
    headers.sort();
    headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect()
}

/// The V1 string to sign: verb, Content-MD5, Content-Type, date (x-oss-date wins), OSS headers, resource.
pub fn v1_string_to_sign(parts: &RequestParts<'_>) -> String {
    let date = parts
        .header("x-oss-date")
        .or_else(|| parts.header("date"))
        .unwrap_or("");
    format!(
        "{}\n{}\n{}\n{}\n{}{}",
        parts.method,
        parts.header("content-md5").unwrap_or(""),
        parts.header("content-type").unwrap_or(""),
        date,
        v1_canonical_oss_headers(parts),
        v1_canonical_resource(parts),
    )
}

/// `base64(hmac-sha1(secret, string_to_sign))`.
pub fn v1_signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(access_key_secret.as_bytes()).expect("HMAC takes any key");
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The V1 Authorization header value.
pub fn v1_authorization(access_key_id: &str, access_key_secret: &str, string_to_sign: &str) -> String {
    format!(
        "OSS {access_key_id}:{}",
        v1_signature(access_key_secret, string_to_sign)
    )
}

// ---------------------------------------------------------------------------------------------
// V4
// ---------------------------------------------------------------------------------------------

/// URI-encodes with OSS's unreserved set (`A-Z a-z 0-9 - _ . ~`), keeping `/` when asked.
pub fn uri_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, as OSS reads query strings).
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a raw query string (`a=1&b&c=`) into decoded pairs, keeping their order.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(part), String::new()),
        })
        .collect()
}

/// Lower-cased, sorted, de-duplicated additional headers, minus those signed anyway and those absent.
pub fn v4_additional_headers(parts: &RequestParts<'_>, requested: &[String]) -> Vec<String> {
    let mut names: Vec<String> = requested
        .iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !is_v4_default_signed(n) && parts.header(n).is_some())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn is_v4_default_signed(lower_name: &str) -> bool {
    lower_name.starts_with("x-oss-") || lower_name == "content-type" || lower_name == "content-md5"
}

/// The V4 canonical request (additional headers already normalised by [`v4_additional_headers`]).
pub fn v4_canonical_request(parts: &RequestParts<'_>, additional: &[String]) -> String {
    let uri = uri_encode(&parts.resource_path(), true);

    let mut query: Vec<(String, String)> = parts
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&");

    let mut headers: Vec<(String, &str)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| is_v4_default_signed(k) || additional.contains(k))
        .collect();
    headers.sort();
    let headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();

    let payload = parts.header("x-oss-content-sha256").unwrap_or(UNSIGNED_PAYLOAD);
    format!(
        "{}\n{uri}\n{query}\n{headers}\n{}\n{payload}",
        parts.method,
        additional.join(";")
    )
}

/// The V4 string to sign.
pub fn v4_string_to_sign(oss_date: &str, scope: &Scope, canonical_request: &str) -> String {
    format!(
        "{V4_ALGORITHM}\n{oss_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The V4 signing key: HMAC chain over `aliyun_v4<secret>`, date, region, product, `aliyun_v4_request`.
pub fn v4_signing_key(access_key_secret: &str, scope: &Scope) -> Vec<u8> {
    let k_date = hmac_sha256(format!("aliyun_v4{access_key_secret}").as_bytes(), &scope.date);
    let k_region = hmac_sha256(&k_date, &scope.region);
    let k_product = hmac_sha256(&k_region, &scope.product);
    hmac_sha256(&k_product, "aliyun_v4_request")
}

/// Lower-case hex of the V4 signature.
pub fn v4_signature(access_key_secret: &str, scope: &Scope, string_to_sign: &str) -> String {
    hex(&hmac_sha256(
        &v4_signing_key(access_key_secret, scope),
        string_to_sign,
    ))
}

/// The V4 Authorization header value for a request (comma separator, as the v2 SDKs send it).
pub fn v4_authorization(
    access_key_id: &str,
    access_key_secret: &str,
    parts: &RequestParts<'_>,
    scope: &Scope,
    oss_date: &str,
    additional_headers: &[String],
) -> String {
    let additional = v4_additional_headers(parts, additional_headers);
    let canonical = v4_canonical_request(parts, &additional);
    let string_to_sign = v4_string_to_sign(oss_date, scope, &canonical);
    let signature = v4_signature(access_key_secret, scope, &string_to_sign);
    let additional_field = if additional.is_empty() {
        String::new()
    } else {
        format!(",AdditionalHeaders={}", additional.join(";"))
    };
    format!("{V4_ALGORITHM} Credential={access_key_id}/{scope}{additional_field},Signature={signature}")
}

/// A parsed `Authorization` header, as a verifier sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedAuthorization {
    V1 {
        access_key_id: String,
        signature: String,
    },
    V4 {
        access_key_id: String,
        scope: Scope,
        additional_headers: Vec<String>,
        signature: String,
    },
}

/// Why an Authorization header could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationFormatError {
    #[error("the Authorization header uses an unknown scheme")]
    UnknownScheme,
    #[error("the OSS Authorization header must be `OSS <AccessKeyId>:<Signature>`")]
    MalformedV1,
    #[error("Invalid credential in Authorization header.")]
    InvalidCredential,
    #[error("the V4 Authorization header has no Signature")]
    MissingSignature,
    #[error("the V4 Authorization header has an empty AdditionalHeaders field")]
    EmptyAdditionalHeaders,
}

/// Reads a V1 or V4 Authorization header; V4 fields may be separated by `,` or `, `.
pub fn parse_authorization(value: &str) -> Result<ParsedAuthorization, AuthorizationFormatError> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix(V4_ALGORITHM).and_then(|r| r.strip_prefix(' ')) {
        let mut credential = None;
        let mut additional = None;
        let mut signature = None;
        for field in rest.split(',').map(str::trim) {
            if let Some(v) = field.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = field.strip_prefix("AdditionalHeaders=") {
                additional = Some(v);
            } else if let Some(v) = field.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let credential = credential.ok_or(AuthorizationFormatError::InvalidCredential)?;
        let pieces: Vec<&str> = credential.split('/').collect();
        let [ak, date, region, product, terminator] = pieces[..] else {
            return Err(AuthorizationFormatError::InvalidCredential);
        };
        if ak.is_empty() || date.len() != 8 || terminator != "aliyun_v4_request" {
            return Err(AuthorizationFormatError::InvalidCredential);
        }
        let additional_headers = match additional {
            None => Vec::new(),
            Some("") => return Err(AuthorizationFormatError::EmptyAdditionalHeaders),
            Some(list) => list.split(';').map(str::to_owned).collect(),
        };
        let signature = signature
            .filter(|s| !s.is_empty())
            .ok_or(AuthorizationFormatError::MissingSignature)?;
        return Ok(ParsedAuthorization::V4 {
            access_key_id: ak.to_owned(),
            scope: Scope {
                date: date.to_owned(),
                region: region.to_owned(),
                product: product.to_owned(),
            },
            additional_headers,
            signature: signature.to_owned(),
        });
    }
    if let Some(rest) = value.strip_prefix("OSS ") {
        let (ak, signature) = rest
            .split_once(':')
            .ok_or(AuthorizationFormatError::MalformedV1)?;
        if ak.is_empty() || signature.is_empty() {
            return Err(AuthorizationFormatError::MalformedV1);
        }
        return Ok(ParsedAuthorization::V1 {
            access_key_id: ak.to_owned(),
            signature: signature.to_owned(),
        });
    }
    Err(AuthorizationFormatError::UnknownScheme)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two signatures without an early exit on the first differing byte.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
