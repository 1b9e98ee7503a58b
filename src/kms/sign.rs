//! Alibaba Cloud POP request signatures as KMS accepts them, as pure functions: ACS3-HMAC-SHA256
//! (the official SDKs' default, what the client sends), and for the emulator's verification the
//! RPC HMAC-SHA1 and ACS4-HMAC-SHA256 forms. Every vector of
//! `shared/testdata/kms-signing-vectors.json` is reproduced byte for byte (see the tests).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::oss::sign::{hex, hmac_sha256, uri_encode};

/// The V3 algorithm name, first word of the `Authorization` header.
pub const ACS3: &str = "ACS3-HMAC-SHA256";
/// The ACS4 algorithm name.
pub const ACS4: &str = "ACS4-HMAC-SHA256";
/// Hex SHA-256 of an empty body (DescribeKey sends none).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986 percent-encoding: `A-Z a-z 0-9 - _ . ~` kept, everything else `%XX` (upper hex).
pub fn pct(value: &str) -> String {
    uri_encode(value, false)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// `name=pct(value)` pairs sorted by name (byte order) and joined by `&`; an empty value gives
/// `name=`. Names are encoded too (the documented form; the SDK's names are all plain ASCII).
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (pct(k), pct(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical headers block (each `name:value\n`) and the `SignedHeaders` list for the headers
/// named in `signed` (lower-case). Values are trimmed; a name given twice has its values sorted
/// and joined with `,`. A name in `signed` that the request lacks signs as empty.
pub fn canonical_headers(headers: &[(String, String)], signed: &[String]) -> (String, String) {
    let mut names: Vec<String> = signed.iter().map(|n| n.trim().to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let mut block = String::new();
    for name in &names {
        let mut values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect();
        values.sort_unstable();
        block.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    (block, names.join(";"))
}

/// One request as the V3/ACS4 signers see it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path (`/`); empty is treated as `/`.
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a [(String, String)],
    /// Headers as sent (any case).
    pub headers: &'a [(String, String)],
    /// Lower-case names of the headers to sign.
    pub signed_headers: &'a [String],
    /// Hex SHA-256 of the body.
    pub payload_hash: &'a str,
}

/// `METHOD\nURI\nQUERY\nHEADERS\nSIGNED\nPAYLOAD` (the headers block ends in `\n`).
pub fn canonical_request(request: &Request<'_>) -> String {
    let (headers, signed) = canonical_headers(request.headers, request.signed_headers);
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    format!(
        "{}\n{path}\n{}\n{headers}\n{signed}\n{}",
        request.method,
        canonical_query(request.query),
        request.payload_hash
    )
}

/// `<algorithm>\n` + hex SHA-256 of the canonical request (V3 and ACS4 alike).
pub fn string_to_sign(algorithm: &str, canonical_request: &str) -> String {
    format!("{algorithm}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Lower-case hex HMAC-SHA256 of the string to sign, keyed by the AccessKey secret (V3).
pub fn acs3_signature(access_key_secret: &str, string_to_sign: &str) -> String {
    hex(&hmac_sha256(access_key_secret.as_bytes(), string_to_sign))
}

/// The V3 `Authorization` header value (no spaces after the commas).
pub fn acs3_authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!("{ACS3} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}")
}

/// The ACS4 signing key: `HMAC("aliyun_v4"+secret, yyyymmdd)`, then region, product,
/// `aliyun_v4_request`.
pub fn acs4_signing_key(access_key_secret: &str, date: &str, region: &str, product: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("aliyun_v4{access_key_secret}").as_bytes(), date);
    let k_region = hmac_sha256(&k_date, region);
    let k_product = hmac_sha256(&k_region, product);
    hmac_sha256(&k_product, "aliyun_v4_request")
}

/// Lower-case hex ACS4 signature; `scope` is `(yyyymmdd, region, product)`.
pub fn acs4_signature(access_key_secret: &str, scope: (&str, &str, &str), string_to_sign: &str) -> String {
    let key = acs4_signing_key(access_key_secret, scope.0, scope.1, scope.2);
    hex(&hmac_sha256(&key, string_to_sign))
}

/// The RPC string to sign: `METHOD&%2F&pct(name=value&…)` over every parameter but `Signature`,
/// names and values percent-encoded and sorted by name.
pub fn rpc_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let unsigned: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "Signature").cloned().collect();
    format!("{method}&%2F&{}", pct(&canonical_query(&unsigned)))
}

/// Base64 HMAC-SHA1 keyed by `secret&` (RPC, `SignatureVersion=1.0`).
pub fn rpc_signature(access_key_secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(format!("{access_key_secret}&").as_bytes()).expect("HMAC takes any key");
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Splits a query string as a form decoder does: `+` is a space, then `%XX` escapes (the Python
/// SDK sends spaces as `+`).
pub fn parse_form_query(raw: &str) -> Vec<(String, String)> {
    crate::oss::sign::parse_query(&raw.replace('+', "%20"))
}

/// A parsed V3 or ACS4 `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub algorithm: String,
    /// The AccessKey id (ACS4: the first part of the credential).
    pub access_key_id: String,
    /// ACS4 only: `(yyyymmdd, region, product)`.
    pub scope: Option<(String, String, String)>,
    /// Lower-case names, in the order given.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…` (and the ACS4 form);
/// `None` when it is neither.
pub fn parse_authorization(value: &str) -> Option<Authorization> {
    let (algorithm, rest) = value.trim().split_once(' ')?;
    if algorithm != ACS3 && algorithm != ACS4 {
        return None;
    }
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name {
            "Credential" => credential = Some(value.to_owned()),
            "SignedHeaders" => signed = Some(value.to_owned()),
            "Signature" => signature = Some(value.to_owned()),
            _ => return None,
        }
    }
    let credential = credential?;
    let (access_key_id, scope) = if algorithm == ACS4 {
        let mut parts = credential.split('/');
        let id = parts.next()?.to_owned();
        let scope = (
            parts.next()?.to_owned(),
            parts.next()?.to_owned(),
            parts.next()?.to_owned(),
        );
        (parts.next() == Some("aliyun_v4_request")).then_some(())?;
        (id, Some(scope))
    } else {
        (credential, None)
    };
    Some(Authorization {
        algorithm: algorithm.to_owned(),
        access_key_id,
        scope,
        signed_headers: signed?
            .split(';')
            .filter(|n| !n.is_empty())
            .map(str::to_ascii_lowercase)
            .collect(),
        signature: signature?,
    })
}

#[cfg(test)]
mod tests;
