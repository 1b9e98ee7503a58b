//! Every vector of `shared/testdata/oss-signing-vectors.json`, reproduced byte for byte.

use super::*;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct VectorFile {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    signature_version: String,
    method: String,
    url: String,
    bucket: Option<String>,
    key: Option<String>,
    region: String,
    product: String,
    signing_time_unix: i64,
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
    additional_headers: Vec<String>,
    request_headers_after_signing: BTreeMap<String, String>,
    string_to_sign: Option<String>,
    authorization: String,
}

/// The repository's copy of `shared/testdata/oss-signing-vectors.json`, so a fresh clone can test.
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/oss-signing-vectors.json");

/// When the shared original sits beside the checkout (as in CI), the copy must equal it.
#[test]
fn vector_copy_equals_the_shared_original() {
    crate::assert_vector_copy_is_current("oss-signing-vectors.json");
}

fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(VECTORS).expect("the signing vectors file");
    let file: VectorFile = serde_json::from_str(&text).expect("vectors parse");
    assert!(
        file.vectors.len() >= 17,
        "expected every vector, got {}",
        file.vectors.len()
    );
    file.vectors
}

fn query_of(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, q)| parse_query(q))
        .unwrap_or_default()
}

fn headers_of(v: &Vector) -> Vec<(String, String)> {
    v.request_headers_after_signing
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn every_vector_string_to_sign_and_authorization() {
    let mut checked = 0;
    for v in vectors() {
        let query = query_of(&v.url);
        let headers = headers_of(&v);
        let parts = RequestParts {
            method: &v.method,
            bucket: v.bucket.as_deref(),
            key: v.key.as_deref(),
            query: &query,
            headers: &headers,
        };
        let (string_to_sign, authorization) = match v.signature_version.as_str() {
            "v1" => {
                let sts = v1_string_to_sign(&parts);
                let auth = v1_authorization(&v.access_key_id, &v.access_key_secret, &sts);
                (sts, auth)
            }
            "v4" => {
                let at = Timestamp::from_second(v.signing_time_unix).unwrap();
                let oss_date = iso8601_basic(at);
                assert_eq!(parts.header("x-oss-date"), Some(oss_date.as_str()), "{}", v.name);
                let scope = Scope {
                    date: oss_date[..8].to_owned(),
                    region: v.region.clone(),
                    product: v.product.clone(),
                };
                let additional = v4_additional_headers(&parts, &v.additional_headers);
                let sts = v4_string_to_sign(&oss_date, &scope, &v4_canonical_request(&parts, &additional));
                let auth = v4_authorization(
                    &v.access_key_id,
                    &v.access_key_secret,
                    &parts,
                    &scope,
                    &oss_date,
                    &v.additional_headers,
                );
                (sts, auth)
            }
            other => panic!("unknown version {other}"),
        };
        if let Some(expected) = &v.string_to_sign {
            assert_eq!(&string_to_sign, expected, "string to sign of {}", v.name);
        }
        assert_eq!(authorization, v.authorization, "authorization of {}", v.name);
        checked += 1;
    }
    assert_eq!(checked, vectors().len());
}

/// `sign` (what the client calls) adds exactly the headers the SDKs add and produces the same header.
#[test]
fn sign_reproduces_the_encryption_vectors_from_scratch() {
    for v in vectors().into_iter().filter(|v| v.url.ends_with("?encryption")) {
        let version = if v.signature_version == "v1" {
            SignatureVersion::V1
        } else {
            SignatureVersion::V4
        };
        let mut credentials = Credentials::new(&v.access_key_id, &v.access_key_secret);
        if let Some(token) = &v.security_token {
            credentials = credentials.with_security_token(token);
        }
        let mut headers: Vec<(String, String)> = v
            .request_headers_after_signing
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-type") || k.eq_ignore_ascii_case("content-md5"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let query = query_of(&v.url);
        let auth = sign(
            version,
            &credentials,
            Target {
                method: &v.method,
                bucket: v.bucket.as_deref(),
                key: None,
                query: &query,
                region: &v.region,
            },
            &mut headers,
            Timestamp::from_second(v.signing_time_unix).unwrap(),
        );
        assert_eq!(auth, v.authorization, "{}", v.name);
        let mut sent: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        sent.sort();
        let mut expected: Vec<(String, String)> = headers_of(&v)
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        expected.sort();
        assert_eq!(sent, expected, "headers of {}", v.name);
    }
}

#[test]
fn v4_signing_key_chain_matches_the_published_intermediates() {
    let scope = Scope {
        date: "20231216".into(),
        region: "cn-hangzhou".into(),
        product: "oss".into(),
    };
    assert_eq!(
        hex(&v4_signing_key("sk", &scope)),
        "b412a03b134ebddd720f5167b5de6db66620ebb3b01cff4d49e3ccb09f8de97f"
    );
}

#[test]
fn authorization_parsing_accepts_both_separators() {
    let compact = "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,AdditionalHeaders=abc;zabc,Signature=4a41";
    let spaced = "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request, AdditionalHeaders=abc;zabc, Signature=4a41";
    let expected = ParsedAuthorization::V4 {
        access_key_id: "ak".into(),
        scope: Scope {
            date: "20231216".into(),
            region: "cn-hangzhou".into(),
            product: "oss".into(),
        },
        additional_headers: vec!["abc".into(), "zabc".into()],
        signature: "4a41".into(),
    };
    assert_eq!(parse_authorization(compact).unwrap(), expected);
    assert_eq!(parse_authorization(spaced).unwrap(), expected);
    assert_eq!(
        parse_authorization("OSS ak:kSHKmLxlyEAKtZPkJhG9bZb5k7M=").unwrap(),
        ParsedAuthorization::V1 {
            access_key_id: "ak".into(),
            signature: "kSHKmLxlyEAKtZPkJhG9bZb5k7M=".into()
        }
    );
}

#[test]
fn malformed_authorization_headers_are_refused() {
    for bad in [
        "",
        "Bearer x",
        "OSS ak",
        "OSS :sig",
        "OSS4-HMAC-SHA256 Credential=ak/2023/cn-hangzhou/oss/aliyun_v4_request,Signature=x",
        "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss,Signature=x",
        "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request",
        "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,AdditionalHeaders=,Signature=x",
    ] {
        assert!(parse_authorization(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn dates_round_trip() {
    let at = Timestamp::from_second(1704067200).unwrap();
    assert_eq!(http_date(at), "Mon, 01 Jan 2024 00:00:00 GMT");
    assert_eq!(iso8601_basic(at), "20240101T000000Z");
    assert_eq!(parse_http_date("Mon, 01 Jan 2024 00:00:00 GMT"), Some(at));
    assert_eq!(parse_iso8601_basic("20240101T000000Z"), Some(at));
    assert_eq!(parse_http_date("yesterday"), None);
    assert_eq!(parse_iso8601_basic("20240101T000000"), None);
}

#[test]
fn uri_encoding_and_query_parsing() {
    assert_eq!(
        uri_encode("/bucket/1234+-/123/1.txt", true),
        "/bucket/1234%2B-/123/1.txt"
    );
    assert_eq!(uri_encode("a/b c~", false), "a%2Fb%20c~");
    assert_eq!(
        parse_query("encryption&a=1&%2Bb=&c=%7C"),
        vec![
            ("encryption".into(), "".into()),
            ("a".into(), "1".into()),
            ("+b".into(), "".into()),
            ("c".into(), "|".into())
        ]
    );
    assert_eq!(percent_decode("%zz%4"), "%zz%4");
}

#[test]
fn constant_time_comparison() {
    assert!(constant_time_eq("abc", "abc"));
    assert!(!constant_time_eq("abc", "abd"));
    assert!(!constant_time_eq("abc", "abcd"));
}
