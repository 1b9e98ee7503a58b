//! Every vector of `shared/testdata/oss-list-buckets-vectors.json` (oss2 and alibabacloud-oss-v2,
//! V1 and V4) reproduced byte for byte with the client's signing functions; the published
//! response bodies parsed; the client's own query shape; the writer read back.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::oss::sign::{
    RequestParts, Scope, parse_query, v1_authorization, v1_string_to_sign, v4_authorization,
    v4_canonical_request, v4_string_to_sign,
};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/oss-list-buckets-vectors.json"
);

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
    published_response_bodies: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    signature_version: String,
    inputs: Inputs,
    wire: Wire,
    string_to_sign: String,
    canonical_request: Option<String>,
    signature: String,
    authorization: String,
}

#[derive(Deserialize)]
struct Inputs {
    access_key_id: String,
    access_key_secret: String,
    region: String,
}

#[derive(Deserialize)]
struct Wire {
    method: String,
    raw_query: String,
    headers: BTreeMap<String, String>,
}

#[test]
fn vector_copy_equals_the_shared_original() {
    crate::assert_vector_copy_is_current("oss-list-buckets-vectors.json");
}

fn file() -> File {
    let file: File = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    assert_eq!(file.vectors.len(), 18, "every vector");
    file
}

#[test]
fn every_vector_signs_byte_for_byte() {
    for v in file().vectors {
        let query = parse_query(&v.wire.raw_query);
        let headers: Vec<(String, String)> = v
            .wire
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let parts = RequestParts {
            method: &v.wire.method,
            bucket: None,
            key: None,
            query: &query,
            headers: &headers,
        };
        let secret = &v.inputs.access_key_secret;
        if v.signature_version == "v1" {
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
            assert!(
                header.ends_with(&format!("Signature={}", v.signature)),
                "{}",
                v.name
            );
        }
    }
}

#[test]
fn the_clients_query_is_the_v2_sdks() {
    let request = ListRequest {
        prefix: "team-".into(),
        marker: "team-b".into(),
        max_keys: 2,
    };
    let vector = file()
        .vectors
        .into_iter()
        .find(|v| v.name == "v2-v4-prefix-marker-maxkeys")
        .unwrap();
    assert_eq!(request.query(), parse_query(&vector.wire.raw_query));
    assert!(
        ListRequest::default().query().is_empty(),
        "nothing set, nothing sent"
    );
}

#[test]
fn published_bodies_parse() {
    let bodies = file().published_response_bodies;
    let complete = parse(bodies["complete_listing"].as_str().unwrap()).unwrap();
    assert!(!complete.is_truncated);
    assert!(!complete.buckets.is_empty());
    for bucket in &complete.buckets {
        assert!(!bucket.name.is_empty() && !bucket.region.is_empty(), "{bucket:?}");
    }
    let truncated = parse(bodies["truncated_listing"].as_str().unwrap()).unwrap();
    assert!(truncated.is_truncated);
    assert_eq!(truncated.next_marker, "mybucket10");
    assert_eq!(truncated.buckets[0].name, "mybucket01");
    assert_eq!(truncated.buckets[0].region, "cn-hangzhou");
    assert_eq!(truncated.buckets[0].location, "oss-cn-hangzhou");
    assert_eq!(truncated.buckets[0].creation_date, "2014-05-14T11:18:32.000Z");
    assert_eq!(truncated.owner, "ut_test_put_bucket");
}

#[test]
fn written_pages_read_back_and_bad_ones_are_refused() {
    let bucket = |name: &str, region: &str| BucketSummary {
        name: name.into(),
        region: region.into(),
        location: format!("oss-{region}"),
        creation_date: "2026-01-01T00:00:00.000Z".into(),
        storage_class: "Standard".into(),
        extranet_endpoint: format!("oss-{region}.aliyuncs.com"),
        intranet_endpoint: format!("oss-{region}-internal.aliyuncs.com"),
    };
    let page = BucketPage {
        buckets: vec![bucket("a&b", "cn-hangzhou"), bucket("c", "cn-shanghai")],
        is_truncated: true,
        next_marker: "c".into(),
        owner: "1540355698840000".into(),
    };
    let request = ListRequest {
        prefix: "".into(),
        marker: "".into(),
        max_keys: 2,
    };
    assert_eq!(parse(&to_xml(&page, &request)).unwrap(), page);
    let last = BucketPage {
        is_truncated: false,
        next_marker: String::new(),
        ..page.clone()
    };
    let xml = to_xml(&last, &request);
    assert!(
        !xml.contains("IsTruncated") && !xml.contains("NextMarker"),
        "{xml}"
    );
    assert_eq!(parse(&xml).unwrap(), last);
    // Region falls back to Location.
    let no_region = "<ListAllMyBucketsResult><Buckets><Bucket><Name>x</Name><Location>oss-eu-central-1</Location></Bucket></Buckets></ListAllMyBucketsResult>";
    assert_eq!(parse(no_region).unwrap().buckets[0].region, "eu-central-1");
    for bad in [
        "<Error><Code>AccessDenied</Code></Error>",
        "<ListAllMyBucketsResult><IsTruncated>maybe</IsTruncated></ListAllMyBucketsResult>",
        "<ListAllMyBucketsResult><IsTruncated>true</IsTruncated></ListAllMyBucketsResult>",
        "<ListAllMyBucketsResult><Buckets><Bucket><Region>x</Region></Bucket></Buckets></ListAllMyBucketsResult>",
        "<ListAllMyBucketsResult><Buckets>",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_next_marker_must_advance_be_a_bucket_name_and_stay_within_the_page_cap() {
    assert_eq!(marker_problem("", "abc", 1), None);
    assert_eq!(marker_problem("abc", "abd", 2), None);
    assert!(
        marker_problem("abc", "abc", 2)
            .unwrap()
            .contains("does not advance")
    );
    assert!(
        marker_problem("abd", "abc", 2)
            .unwrap()
            .contains("does not advance")
    );
    assert!(
        marker_problem("", &"a".repeat(64), 1)
            .unwrap()
            .contains("not a bucket name")
    );
    assert!(marker_problem("", "x\ny", 1).unwrap().contains("x\\ny"));
    assert!(marker_problem("abc", "abd", MAX_PAGES).unwrap().contains("pages"));
}

#[test]
fn printable_escapes_every_control_character() {
    assert_eq!(printable("a\n---\u{1b}[2J\u{7}\r"), "a\\n---\\u{1b}[2J\\u{7}\\r");
    assert_eq!(printable("plain-name"), "plain-name");
}
