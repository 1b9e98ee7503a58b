use super::*;
use crate::oss::rule::{DataEncryption, SseAlgorithm};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Bodies {
    put_bucket_encryption_bodies: BTreeMap<String, Body>,
}

#[derive(Deserialize)]
struct Body {
    xml: String,
    content_md5: String,
}

fn every_rule() -> Vec<EncryptionRule> {
    let mut rules = vec![
        EncryptionRule::new(SseAlgorithm::Aes256),
        EncryptionRule::new(SseAlgorithm::Sm4),
    ];
    for key in [
        None,
        Some("9468da86-3509-4f8d-a61e-6eab1eac0000"),
        Some("key&<\"quoted\">"),
    ] {
        for data in [None, Some(DataEncryption::Sm4)] {
            rules.push(EncryptionRule::kms(key, data));
        }
    }
    rules
}

#[test]
fn bodies_match_the_sdk_bytes_and_md5() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/oss-signing-vectors.json"
    ))
    .unwrap();
    let bodies: Bodies = serde_json::from_str(&text).unwrap();
    let rule_for = |name: &str| match name {
        "AES256" => EncryptionRule::new(SseAlgorithm::Aes256),
        "SM4" => EncryptionRule::new(SseAlgorithm::Sm4),
        "KMS" => EncryptionRule::kms(None, None),
        "KMS+key+SM4" => EncryptionRule::kms(
            Some("9468da86-3509-4f8d-a61e-6eab1eac0000"),
            Some(DataEncryption::Sm4),
        ),
        other => panic!("unknown body {other}"),
    };
    assert_eq!(bodies.put_bucket_encryption_bodies.len(), 4);
    for (name, body) in &bodies.put_bucket_encryption_bodies {
        let xml = rule_to_xml(&rule_for(name));
        assert_eq!(xml, body.xml, "{name}");
        assert_eq!(
            crate::oss::content_md5(xml.as_bytes()),
            body.content_md5,
            "{name}"
        );
    }
}

#[test]
fn every_rule_round_trips_through_both_writers() {
    for rule in every_rule() {
        for xml in [rule_to_xml(&rule), raw_rule_to_xml(&RawRule::from(&rule))] {
            let raw = parse_rule(&xml).unwrap();
            let back =
                EncryptionRule::from_wire(&raw.algorithm, &raw.kms_master_key_id, &raw.kms_data_encryption)
                    .unwrap();
            assert_eq!(back, rule, "{xml}");
        }
    }
}

#[test]
fn parsing_accepts_any_order_namespaces_and_empty_elements() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ServerSideEncryptionRule xmlns="http://doc.oss-cn-hangzhou.aliyuncs.com">
  <ApplyServerSideEncryptionByDefault>
    <KMSDataEncryption>SM4</KMSDataEncryption>
    <KMSMasterKeyID></KMSMasterKeyID>
    <SSEAlgorithm>KMS</SSEAlgorithm>
    <Unknown>ignored</Unknown>
  </ApplyServerSideEncryptionByDefault>
</ServerSideEncryptionRule>"#;
    let raw = parse_rule(xml).unwrap();
    assert_eq!(
        raw,
        RawRule {
            algorithm: "KMS".into(),
            kms_master_key_id: "".into(),
            kms_data_encryption: "SM4".into()
        }
    );
    let self_closing = "<ServerSideEncryptionRule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID/></ApplyServerSideEncryptionByDefault></ServerSideEncryptionRule>";
    assert_eq!(parse_rule(self_closing).unwrap().kms_master_key_id, "");
    let prefixed = "<x:ServerSideEncryptionRule xmlns:x=\"u\"><x:ApplyServerSideEncryptionByDefault><x:SSEAlgorithm>SM4</x:SSEAlgorithm></x:ApplyServerSideEncryptionByDefault></x:ServerSideEncryptionRule>";
    assert_eq!(parse_rule(prefixed).unwrap().algorithm, "SM4");
    let cdata = "<ServerSideEncryptionRule><ApplyServerSideEncryptionByDefault><SSEAlgorithm><![CDATA[KMS]]></SSEAlgorithm></ApplyServerSideEncryptionByDefault></ServerSideEncryptionRule>";
    assert_eq!(parse_rule(cdata).unwrap().algorithm, "KMS");
}

#[test]
fn malformed_rules_are_errors() {
    let cases = [
        ("", "empty"),
        ("<ServerSideEncryptionRule>", "never closed"),
        ("<ServerSideEncryptionRule></Other>", "not well-formed"),
        ("<Other/>", "expected root"),
        (
            "<ServerSideEncryptionRule></ServerSideEncryptionRule>",
            "SSEAlgorithm",
        ),
        (
            "<ServerSideEncryptionRule><SSEAlgorithm>AES256</SSEAlgorithm></ServerSideEncryptionRule>",
            "SSEAlgorithm",
        ),
        ("<a/><b/>", "more than one root"),
        ("text", "outside"),
    ];
    for (xml, expected) in cases {
        let err = parse_rule(xml).unwrap_err().to_string();
        assert!(err.contains(expected), "{xml:?}: {err}");
    }
}

#[test]
fn error_documents_round_trip_and_parse_in_any_shape() {
    let body = ErrorBody {
        code: "SignatureDoesNotMatch".into(),
        message: "The request signature we calculated does not match".into(),
        request_id: "5C3D9175B6FC201293AD0000".into(),
        host_id: "b.oss-cn-hangzhou.aliyuncs.com".into(),
        ec: "0002-00000040".into(),
        bucket_name: "b".into(),
        string_to_sign: "GET\n\n\nMon, 01 Jan 2024 00:00:00 GMT\n/b/?encryption".into(),
        access_key_id: "ak".into(),
        recommend_doc: "https://api.aliyun.com/troubleshoot?q=0002-00000040".into(),
    };
    assert_eq!(parse_error(&error_to_xml(&body)).unwrap(), body);
    let documented = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error xmlns="http://doc.oss-cn-hangzhou.aliyuncs.com">
  <EC>0015-00000101</EC>
  <RequestId>5C3D9175B6FC201293AD****</RequestId>
  <Code>NoSuchBucket</Code>
  <Message>The specified bucket does not exist.</Message>
  <HostId>test.oss-cn-hangzhou.aliyuncs.com</HostId>
  <BucketName>test</BucketName>
</Error>"#;
    let parsed = parse_error(documented).unwrap();
    assert_eq!(parsed.code, "NoSuchBucket");
    assert_eq!(parsed.ec, "0015-00000101");
    assert_eq!(parsed.request_id, "5C3D9175B6FC201293AD****");
    assert!(parse_error("<ServerSideEncryptionRule/>").is_err());
}
