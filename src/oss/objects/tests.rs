//! Every vector of `shared/testdata/oss-object-vectors.json` (oss2 and alibabacloud-oss-v2, V1 and
//! V4, with and without STS) reproduced byte for byte with the client's signing functions; the
//! client's own requests (query, path, signature) equal to the SDKs'; the published response
//! fixtures read; the writer read back.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;

use super::*;
use crate::oss::Credentials;
use crate::oss::sign::{
    RequestParts, Scope, Target, parse_query, v1_authorization, v1_string_to_sign, v4_authorization,
    v4_canonical_request, v4_string_to_sign,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/oss-object-vectors.json");

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
    published_response_fixtures: serde_json::Value,
    canned_responses_used: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    signature_version: String,
    inputs: Inputs,
    wire: Wire,
    string_to_sign: String,
    canonical_request: Option<String>,
    canonical_resource: Option<String>,
    signature: String,
    authorization: String,
}

#[derive(Deserialize)]
struct Inputs {
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
    region: String,
    bucket: String,
    key: Option<String>,
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
    crate::assert_vector_copy_is_current("oss-object-vectors.json");
}

fn file() -> File {
    let file: File = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    assert_eq!(file.vectors.len(), 85, "every vector");
    file
}

/// The query as OSS reads it: a literal `+` is a space (oss2 sends spaces so).
fn oss_query(raw: &str) -> Vec<(String, String)> {
    parse_query(&raw.replace('+', "%20"))
}

/// The decoded key of a wire path (`/docs%2Freport.pdf` and `/docs/report.pdf` alike).
fn wire_key(path: &str) -> Option<String> {
    let key = path.strip_prefix('/').unwrap_or(path);
    (!key.is_empty()).then(|| sign::percent_decode(key))
}

#[test]
fn every_vector_signs_byte_for_byte() {
    let file = file();
    for v in &file.vectors {
        let query = oss_query(&v.wire.raw_query);
        let key = wire_key(&v.wire.path);
        assert_eq!(key, v.inputs.key, "{}: the wire path decodes to the key", v.name);
        let headers: Vec<(String, String)> = v
            .wire
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let parts = RequestParts {
            method: &v.wire.method,
            bucket: Some(&v.inputs.bucket),
            key: key.as_deref(),
            query: &query,
            headers: &headers,
        };
        let secret = &v.inputs.access_key_secret;
        if v.signature_version == "v1" {
            assert_eq!(
                Some(crate::oss::sign::v1_canonical_resource(&parts)),
                v.canonical_resource,
                "{}",
                v.name
            );
            let to_sign = v1_string_to_sign(&parts);
            assert_eq!(to_sign, v.string_to_sign, "{}", v.name);
            let header = v1_authorization(&v.inputs.access_key_id, secret, &to_sign);
            assert_eq!(header, v.authorization, "{}", v.name);
            assert!(header.ends_with(&v.signature), "{}", v.name);
        } else {
            let canonical = v4_canonical_request(&parts, &[]);
            assert_eq!(Some(&canonical), v.canonical_request.as_ref(), "{}", v.name);
            let oss_date = parts.header("x-oss-date").unwrap().to_owned();
            let scope = Scope {
                date: oss_date[..8].to_owned(),
                region: v.inputs.region.clone(),
                product: "oss".into(),
            };
            assert_eq!(
                v4_string_to_sign(&oss_date, &scope, &canonical),
                v.string_to_sign,
                "{}",
                v.name
            );
            let header = v4_authorization(&v.inputs.access_key_id, secret, &parts, &scope, &oss_date, &[]);
            // oss2 separates the fields with ", ", the v2 SDK with ","; OSS accepts both.
            assert_eq!(header, v.authorization.replace(", ", ","), "{}", v.name);
        }
    }
}

/// The client's ListObjectsV2 and HeadObject requests, signed by `sign::sign` as the client
/// signs them at the vectors' time: the same query as the v2 SDK, oss2's escaped path, and the
/// very signatures the SDKs computed.
#[test]
fn the_clients_requests_are_the_sdks() {
    let file = file();
    let find = |name: &str| file.vectors.iter().find(|v| v.name == name).unwrap();

    let continuation = find("v2-v4-list-v2-continuation-start-after");
    let request = ObjectListRequest {
        prefix: "logs/".into(),
        start_after: "logs/2024-01-01".into(),
        continuation_token: "CgJiYw--".into(),
        max_keys: 2,
    };
    let mut expected = oss_query(&continuation.wire.raw_query);
    expected.sort();
    assert_eq!(request.query(), expected);
    let first = find("v2-v4-list-v2-first-page");
    let mut expected = oss_query(&first.wire.raw_query);
    expected.sort();
    let request = ObjectListRequest {
        prefix: "logs/".into(),
        max_keys: 1000,
        ..ObjectListRequest::default()
    };
    assert_eq!(request.query(), expected);

    let at: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    for name in [
        "oss2-v1-head-plain-key",
        "oss2-v1-sts-head-plain-key",
        "oss2-v4-head-plain-key",
        "oss2-v4-sts-head-plain-key",
        "oss2-v1-head-encoded-key",
        "oss2-v4-head-encoded-key",
        "oss2-v4-sts-head-encoded-key",
        "v2-v4-head-encoded-key",
        "v2-v1-head-encoded-key",
    ] {
        let v = find(name);
        let credentials = match &v.inputs.security_token {
            Some(token) => Credentials::new(&v.inputs.access_key_id, &v.inputs.access_key_secret)
                .with_security_token(token),
            None => Credentials::new(&v.inputs.access_key_id, &v.inputs.access_key_secret),
        };
        let key = v.inputs.key.as_deref().unwrap();
        let version = if v.signature_version == "v1" {
            SignatureVersion::V1
        } else {
            SignatureVersion::V4
        };
        let mut headers = Vec::new();
        let authorization = sign::sign(
            version,
            &credentials,
            Target {
                method: "HEAD",
                bucket: Some(&v.inputs.bucket),
                key: Some(key),
                query: &[],
                region: &v.inputs.region,
            },
            &mut headers,
            at,
        );
        assert_eq!(authorization, v.authorization.replace(", ", ","), "{name}");
        let endpoint =
            crate::oss::Endpoint::for_region("cn-hangzhou", crate::oss::EndpointKind::Public).unwrap();
        let call = Call {
            op: Operation::HeadObject,
            bucket: Some(&v.inputs.bucket),
            key: Some(key),
            region: "cn-hangzhou",
            endpoint: &endpoint,
            version,
            query: Vec::new(),
            body: None,
            body_limit: 0,
        };
        if name.starts_with("oss2-") {
            assert_eq!(
                call.url(),
                format!(
                    "https://examplebucket.oss-cn-hangzhou.aliyuncs.com{}",
                    v.wire.path
                ),
                "{name}: oss2's escaping, `/` included"
            );
        }
    }
}

use crate::oss::SignatureVersion;

#[test]
fn the_published_listing_decodes_as_the_v2_sdk_decodes_it() {
    let file = file();
    let fixture = &file.published_response_fixtures["ListObjectsV2_encoding_url"];
    let page = parse_list(fixture["body"].as_str().unwrap()).unwrap();
    let v2 = &fixture["decoded_by_python_sdks"]["alibabacloud-oss-v2"];
    assert_eq!(page.is_truncated, v2["is_truncated"].as_bool().unwrap());
    assert_eq!(
        page.next_continuation_token,
        v2["next_continuation_token"].as_str().unwrap()
    );
    assert_eq!(page.key_count, v2["key_count"].as_u64().unwrap());
    let objects = v2["objects"].as_array().unwrap();
    assert_eq!(page.objects.len(), objects.len());
    for (ours, theirs) in page.objects.iter().zip(objects) {
        assert_eq!(ours.key, theirs["key"].as_str().unwrap());
        assert_eq!(ours.etag, theirs["etag"].as_str().unwrap());
        assert_eq!(ours.size, theirs["size"].as_u64().unwrap());
        assert_eq!(ours.storage_class, theirs["storage_class"].as_str().unwrap());
        assert_eq!(ours.object_type, theirs["object_type"].as_str().unwrap_or(""));
    }
    assert_eq!(page.objects[0].last_modified, "2020-05-18T05:45:54.000Z");
    let canned = parse_list(file.canned_responses_used["ListObjectsV2"].as_str().unwrap()).unwrap();
    assert_eq!(canned.objects[0].key, "dir/a b+c/中文 ü~.txt");
    assert!(!canned.is_truncated);
}

#[test]
fn the_published_head_headers_read_as_their_kind() {
    let file = file();
    let sets = &file.published_response_fixtures["HeadObject_header_sets"];
    let expected = [
        ("none", EncryptionKind::None, None),
        ("AES256", EncryptionKind::Aes256, None),
        (
            "KMS",
            EncryptionKind::Kms,
            Some("9468da86-3509-4f8d-a61e-6eab1eac****"),
        ),
        (
            "KMS+SM4",
            EncryptionKind::KmsSm4,
            Some("9468da86-3509-4f8d-a61e-6eab1eac****"),
        ),
        ("SM4", EncryptionKind::Sm4, None),
    ];
    for (name, kind, key) in expected {
        let headers = sets[name]["headers"].as_object().unwrap();
        let head = head_from_headers(|wanted| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(wanted))
                .and_then(|(_, v)| v.as_str())
        })
        .unwrap();
        assert_eq!(head.encryption.kind(), kind, "{name}");
        assert_eq!(head.encryption.key_id(), key, "{name}");
    }
    let copy = &file.published_response_fixtures["CopyObject_response_kms_sm4"]["headers"];
    let copy = copy.as_object().unwrap();
    let head = head_from_headers(|wanted| {
        copy.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(wanted))
            .and_then(|(_, v)| v.as_str())
    })
    .unwrap();
    assert_eq!(head.encryption.kind(), EncryptionKind::KmsSm4);
}

#[test]
fn encryption_headers_follow_the_facts_matrix() {
    let read = |sse, key, data| ObjectEncryption::from_headers(sse, key, data).unwrap();
    assert_eq!(read(None, None, None), ObjectEncryption::None);
    assert_eq!(read(Some(""), None, None), ObjectEncryption::None);
    // Data encryption counts only with KMS: OSS ignores it otherwise.
    assert_eq!(read(Some("AES256"), None, Some("SM4")), ObjectEncryption::Aes256);
    assert_eq!(read(None, None, Some("SM4")), ObjectEncryption::None);
    assert_eq!(
        read(Some("KMS"), Some("k1"), Some("SM4")),
        ObjectEncryption::Kms {
            key_id: "k1".into(),
            sm4: true
        }
    );
    assert!(ObjectEncryption::from_headers(Some("DES"), None, None).is_err());
    assert!(
        ObjectEncryption::from_headers(Some("KMS"), None, Some("AES"))
            .unwrap_err()
            .contains("not SM4")
    );
}

#[test]
fn below_the_rule_is_the_downgrade_guards_order() {
    let kms = |key: &str, sm4| ObjectEncryption::Kms {
        key_id: key.into(),
        sm4,
    };
    let rules = [
        None,
        Some(EncryptionRule::new(SseAlgorithm::Aes256)),
        Some(EncryptionRule::new(SseAlgorithm::Sm4)),
        Some(EncryptionRule::kms(Some("k1"), None)),
    ];
    let objects = [
        ObjectEncryption::None,
        ObjectEncryption::Aes256,
        ObjectEncryption::Sm4,
        kms("k2", false),
        kms("k1", true),
    ];
    // Rows: the rule; columns: the object; `v` marks below the rule.
    let table = [".....", "v....", "v....", "vvv.."];
    for (rule, row) in rules.iter().zip(table) {
        let got: String = objects
            .iter()
            .map(|o| if o.is_below(rule.as_ref()) { 'v' } else { '.' })
            .collect();
        assert_eq!(got, row, "rule {rule:?}");
        for object in &objects {
            assert_eq!(
                object.is_below(rule.as_ref()),
                crate::oss::is_downgrade(rule.as_ref(), object.as_rule().as_ref()),
                "the same order as the downgrade guard"
            );
        }
    }
    let names: Vec<&str> = EncryptionKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, ["None", "AES256", "SM4", "KMS", "KMS+SM4"]);
}

#[test]
fn written_pages_read_back_and_bad_ones_are_refused() {
    let object = |key: &str| ObjectSummary {
        key: key.into(),
        last_modified: "2026-01-01T00:00:00.000Z".into(),
        etag: "\"5B3C1A2E053D763E1B002CC607C50000\"".into(),
        size: 7,
        storage_class: "Standard".into(),
        object_type: "Normal".into(),
    };
    let page = ObjectPage {
        objects: vec![object("dir/a b+c/中文 ü~.txt"), object("x&y<z>%41")],
        common_prefixes: Vec::new(),
        is_truncated: true,
        next_continuation_token: "x&y<z>%41".into(),
        key_count: 2,
    };
    let request = ObjectListRequest {
        prefix: "d ".into(),
        start_after: "c".into(),
        continuation_token: "tok/=".into(),
        max_keys: 2,
    };
    let xml = list_to_xml("b1", &page, &request, true);
    assert!(
        xml.contains("<Key>dir%2Fa%20b%2Bc%2F%E4%B8%AD%E6%96%87%20%C3%BC~.txt</Key>"),
        "{xml}"
    );
    assert_eq!(parse_list(&xml).unwrap(), page);
    let plain = list_to_xml("b1", &page, &request, false);
    assert!(plain.contains("<Key>x&amp;y&lt;z&gt;%41</Key>"), "{plain}");
    assert_eq!(
        parse_list(&plain).unwrap(),
        page,
        "without url encoding nothing is decoded"
    );
    for bad in [
        "<ListAllMyBucketsResult/>",
        "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
        "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><EncodingType>base64</EncodingType></ListBucketResult>",
        "<ListBucketResult><Contents>",
    ] {
        assert!(parse_list(bad).is_err(), "{bad}");
    }
}

#[test]
fn keys_and_tokens_that_cannot_be_followed_are_refused() {
    assert!(key_problem("").is_some());
    assert!(key_problem("..").is_some());
    assert!(key_problem(".").is_some());
    assert!(key_problem(&"k".repeat(1024)).is_some());
    assert_eq!(key_problem("a/../b"), None, "escaped `/` keeps it one segment");
    assert_eq!(token_problem("", "t1", 1), None);
    assert!(token_problem("t1", "t1", 2).unwrap().contains("repeats"));
    assert!(token_problem("t1", "t2", MAX_PAGES).unwrap().contains("pages"));
}
