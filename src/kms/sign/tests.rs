//! Every vector of `shared/testdata/kms-signing-vectors.json` (V3, RPC, ACS4 and the published
//! checks), reproduced byte for byte; the client's own request builder on every V3 vector.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::kms::request;
use crate::oss::Credentials;

/// The repository's copy of the shared vectors, so a fresh clone can test.
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kms-signing-vectors.json");

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
    published_vectors: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    signature: String,
    inputs: Inputs,
    wire: Wire,
    canonical_request: Option<String>,
    string_to_sign: String,
    signed_headers: Option<Vec<String>>,
    signature_hex: Option<String>,
    authorization: Option<String>,
    canonicalized_query_string: Option<String>,
    signature_base64: Option<String>,
}

#[derive(Deserialize)]
struct Inputs {
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
    region_id: String,
    params: BTreeMap<String, String>,
    timestamp: String,
    nonce: String,
    user_agent: String,
}

#[derive(Deserialize)]
struct Wire {
    method: String,
    path: String,
    raw_query: String,
    headers: BTreeMap<String, String>,
}

#[test]
fn vector_copy_equals_the_shared_original() {
    crate::assert_vector_copy_is_current("kms-signing-vectors.json");
}

fn file() -> File {
    let file: File = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    assert_eq!(file.vectors.len(), 16, "every vector");
    file
}

fn wire_headers(wire: &Wire) -> Vec<(String, String)> {
    wire.headers
        .iter()
        .filter(|(k, _)| k.as_str() != "Authorization" && k.as_str() != "Content-Length")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn v3_and_acs4_vectors_reproduce_from_the_wire() {
    let mut checked = 0;
    for v in file().vectors.iter().filter(|v| !v.signature.starts_with("RPC")) {
        let query = parse_form_query(&v.wire.raw_query);
        let headers = wire_headers(&v.wire);
        let signed = v.signed_headers.clone().unwrap();
        let payload = &v.wire.headers["x-acs-content-sha256"];
        let canonical = canonical_request(&Request {
            method: &v.wire.method,
            path: &v.wire.path,
            query: &query,
            headers: &headers,
            signed_headers: &signed,
            payload_hash: payload,
        });
        assert_eq!(&canonical, v.canonical_request.as_ref().unwrap(), "{}", v.name);
        let algorithm = if v.signature == ACS4 { ACS4 } else { ACS3 };
        let to_sign = string_to_sign(algorithm, &canonical);
        assert_eq!(to_sign, v.string_to_sign, "{}", v.name);
        let secret = &v.inputs.access_key_secret;
        let (signature, authorization) = if algorithm == ACS4 {
            let date = v.inputs.timestamp[..10].replace('-', "");
            let scope = (date.as_str(), v.inputs.region_id.as_str(), "Kms");
            let signature = acs4_signature(secret, scope, &to_sign);
            let header = format!(
                "{ACS4} Credential={}/{}/{}/Kms/aliyun_v4_request,SignedHeaders={},Signature={signature}",
                v.inputs.access_key_id,
                scope.0,
                scope.1,
                signed.join(";")
            );
            (signature, header)
        } else {
            let signature = acs3_signature(secret, &to_sign);
            let header = acs3_authorization(&v.inputs.access_key_id, &signed.join(";"), &signature);
            (signature, header)
        };
        assert_eq!(&signature, v.signature_hex.as_ref().unwrap(), "{}", v.name);
        assert_eq!(&authorization, v.authorization.as_ref().unwrap(), "{}", v.name);
        let parsed = parse_authorization(&authorization).unwrap();
        assert_eq!(parsed.signed_headers, signed, "{}", v.name);
        assert_eq!(parsed.access_key_id, v.inputs.access_key_id, "{}", v.name);
        checked += 1;
    }
    assert_eq!(checked, 13, "11 V3 and 2 ACS4 vectors");
}

#[test]
fn the_clients_request_builder_reproduces_every_v3_vector() {
    let mut checked = 0;
    for v in file().vectors.iter().filter(|v| v.signature == ACS3) {
        let inputs = &v.inputs;
        let credentials = Credentials::new(&inputs.access_key_id, &inputs.access_key_secret)
            .with_security_token(inputs.security_token.clone().unwrap_or_default());
        let signed = request::describe_key(&request::Inputs {
            credentials: &credentials,
            host: &v.wire.headers["host"],
            key_id: &inputs.params["KeyId"],
            date: &inputs.timestamp,
            nonce: &inputs.nonce,
            user_agent: &inputs.user_agent,
        });
        let mut sent: BTreeMap<String, String> = signed.headers.iter().cloned().collect();
        let mut expected = v.wire.headers.clone();
        expected.remove("Content-Length");
        assert_eq!(
            sent.remove("Authorization"),
            expected.remove("Authorization"),
            "{}",
            v.name
        );
        assert_eq!(sent, expected, "{}", v.name);
        assert_eq!(
            parse_form_query(&signed.query_string()),
            parse_form_query(&v.wire.raw_query),
            "{}: the query decodes to the same parameters",
            v.name
        );
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn rpc_vectors_reproduce_from_the_wire() {
    let mut checked = 0;
    for v in file().vectors.iter().filter(|v| v.signature.starts_with("RPC")) {
        let params = parse_form_query(&v.wire.raw_query);
        let unsigned: Vec<(String, String)> =
            params.iter().filter(|(k, _)| k != "Signature").cloned().collect();
        assert_eq!(
            &canonical_query(&unsigned),
            v.canonicalized_query_string.as_ref().unwrap(),
            "{}",
            v.name
        );
        let to_sign = rpc_string_to_sign(&v.wire.method, &params);
        assert_eq!(to_sign, v.string_to_sign, "{}", v.name);
        let signature = rpc_signature(&v.inputs.access_key_secret, &to_sign);
        assert_eq!(&signature, v.signature_base64.as_ref().unwrap(), "{}", v.name);
        let sent = params
            .iter()
            .find(|(k, _)| k == "Signature")
            .map(|(_, s)| s.clone());
        assert_eq!(sent, Some(signature), "{}: the signature on the wire", v.name);
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn published_vectors_reproduce() {
    let published = file().published_vectors;
    let by_name = |name: &str| published.iter().find(|p| p["name"] == name).unwrap().clone();
    let pairs = |value: &serde_json::Value| -> Vec<(String, String)> {
        value
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    };

    let rpc = by_name("openapi-util-test_get_rpc_signature");
    let to_sign = rpc_string_to_sign("GET", &pairs(&rpc["params"]));
    assert_eq!(to_sign, rpc["string_to_sign"]);
    assert_eq!(rpc_signature("secret", &to_sign), rpc["signature_base64"]);

    let doc = by_name("kms-doc-signature-example");
    let to_sign = rpc_string_to_sign("GET", &pairs(&doc["params"]));
    assert_eq!(to_sign, doc["string_to_sign"]);
    assert_eq!(rpc_signature("testsecret", &to_sign), doc["signature_base64"]);

    let v3 = by_name("openapi-util-test_get_authorization");
    let headers = pairs(&v3["headers"]);
    let canonical = canonical_request(&Request {
        method: "GET",
        path: "",
        query: &pairs(&v3["query"]),
        headers: &headers,
        signed_headers: &["x-acs-test".to_owned()],
        payload_hash: v3["hashed_payload"].as_str().unwrap(),
    });
    assert_eq!(canonical, v3["canonical_request"]);
    let to_sign = string_to_sign(ACS3, &canonical);
    assert_eq!(to_sign, v3["string_to_sign"]);
    let header = acs3_authorization("acesskey", "x-acs-test", &acs3_signature("secret", &to_sign));
    assert_eq!(header, v3["authorization"]);

    let query = by_name("openapi-util-test_get_canonical_query_string");
    assert_eq!(
        canonical_query(&pairs(&query["query"])),
        query["canonical_query_string"]
    );
}

#[test]
fn authorization_parsing_refuses_what_is_not_v3_or_acs4() {
    assert!(parse_authorization("OSS4-HMAC-SHA256 Credential=a,SignedHeaders=h,Signature=s").is_none());
    assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=a,Signature=s").is_none());
    assert!(
        parse_authorization("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=h,Signature=s,Extra=x").is_none()
    );
    assert!(
        parse_authorization("ACS4-HMAC-SHA256 Credential=a/20240101/r/Kms/other,SignedHeaders=h,Signature=s")
            .is_none()
    );
    let acs4 = parse_authorization(
        "ACS4-HMAC-SHA256 Credential=a/20240101/r/Kms/aliyun_v4_request,SignedHeaders=host,Signature=s",
    )
    .unwrap();
    assert_eq!(acs4.scope, Some(("20240101".into(), "r".into(), "Kms".into())));
}
