//! Objects end to end: PutObject and CopyObject on the wire (signed as the SDKs sign them) into
//! the emulator, read back by the client's HeadObject and ListObjectsV2 (V4 and V1), paging and
//! URL-encoded keys, the bucket default applied at upload, HEAD errors from `x-oss-err`, and the
//! data-plane limiter kept apart from the management one.

mod support;

use futures_util::StreamExt;
use oss_encryption_operator::emulator::StoredRule;
use oss_encryption_operator::emulator::objects::{MANAGED_CMK_ID, ObjectSse, Seed};
use oss_encryption_operator::oss::objects::{
    EncryptionKind, ObjectClient, ObjectEncryption, ObjectListRequest,
};
use oss_encryption_operator::oss::sign::{self, Target};
use oss_encryption_operator::oss::{BucketTarget, Credentials, CredentialsProvider, SignatureVersion};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

const SPECIAL: &str = "dir/a b+c/中文 ü~.txt";

/// A signed PUT of `key` with `extra` headers (SSE, copy source, directive), as the SDKs send it;
/// returns the status and the response headers.
async fn put(
    oss: &TestOss,
    bucket: &str,
    key: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, reqwest::header::HeaderMap) {
    let credentials = Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let mut headers: Vec<(String, String)> = vec![("Content-Type".into(), "text/plain".into())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let authorization = sign::sign(
        SignatureVersion::V4,
        &credentials,
        Target {
            method: "PUT",
            bucket: Some(bucket),
            key: Some(key),
            query: &[],
            region: REGION,
        },
        &mut headers,
        jiff::Timestamp::now(),
    );
    let url = format!("{}/{bucket}/{}", oss.emulator.url(), sign::uri_encode(key, true));
    let mut request = reqwest::Client::new()
        .put(url)
        .header("Authorization", authorization)
        .body(body.to_owned());
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.headers().clone())
}

fn data_plane(oss: &TestOss) -> ObjectClient {
    oss.client().data_plane(1000.0, 1000)
}

fn target(oss: &TestOss, bucket: &str, version: SignatureVersion) -> BucketTarget {
    oss.target(bucket).with_signature_version(version)
}

async fn kind_of(client: &ObjectClient, target: &BucketTarget, oss: &TestOss, key: &str) -> ObjectEncryption {
    client
        .head_object(target, &oss.credentials, key)
        .await
        .unwrap()
        .value
        .encryption
}

/// A key, the headers it is uploaded with, and the encryption HeadObject must report.
type Upload = (&'static str, Vec<(&'static str, &'static str)>, ObjectEncryption);

#[tokio::test]
async fn every_encryption_kind_put_is_read_back_by_head_object() {
    let oss = TestOss::start(&["objects-1"]).await;
    let client = data_plane(&oss);
    let uploads: [Upload; 6] = [
        ("plain", vec![], ObjectEncryption::None),
        (
            "aes",
            vec![("x-oss-server-side-encryption", "AES256")],
            ObjectEncryption::Aes256,
        ),
        (
            "sm4",
            vec![("x-oss-server-side-encryption", "SM4")],
            ObjectEncryption::Sm4,
        ),
        (
            "kms-managed",
            vec![("x-oss-server-side-encryption", "KMS")],
            ObjectEncryption::Kms {
                key_id: MANAGED_CMK_ID.into(),
                sm4: false,
            },
        ),
        (
            "kms-k1",
            vec![
                ("x-oss-server-side-encryption", "KMS"),
                ("x-oss-server-side-encryption-key-id", "k1"),
            ],
            ObjectEncryption::Kms {
                key_id: "k1".into(),
                sm4: false,
            },
        ),
        (
            SPECIAL,
            vec![
                ("x-oss-server-side-encryption", "KMS"),
                ("x-oss-server-side-data-encryption", "SM4"),
            ],
            ObjectEncryption::Kms {
                key_id: MANAGED_CMK_ID.into(),
                sm4: true,
            },
        ),
    ];
    for (key, headers, _) in &uploads {
        let (status, answer) = put(&oss, "objects-1", key, headers, "hello").await;
        assert_eq!(status, 200, "{key}");
        assert_eq!(
            answer["etag"], "\"5D41402ABC4B2A76B9719D911017C592\"",
            "{key}: MD5 of hello"
        );
    }
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let target = target(&oss, "objects-1", version);
        for (key, _, expected) in &uploads {
            let reply = client.head_object(&target, &oss.credentials, key).await.unwrap();
            assert_eq!(&reply.value.encryption, expected, "{version:?} {key}");
            assert_eq!(reply.value.content_length, 5, "{key}");
            assert!(reply.value.last_modified.ends_with("GMT"), "{key}");
            assert!(!reply.request_id.is_empty());
        }
    }
    // AES256 with data encryption SM4: OSS ignores the data encryption.
    put(
        &oss,
        "objects-1",
        "aes-sm4",
        &[
            ("x-oss-server-side-encryption", "AES256"),
            ("x-oss-server-side-data-encryption", "SM4"),
        ],
        "x",
    )
    .await;
    let t = target(&oss, "objects-1", SignatureVersion::V4);
    assert_eq!(
        kind_of(&client, &t, &oss, "aes-sm4").await,
        ObjectEncryption::Aes256
    );
    let (status, _) = put(
        &oss,
        "objects-1",
        "bad",
        &[("x-oss-server-side-encryption", "DES")],
        "x",
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_bucket_default_applies_at_upload_unless_the_upload_chooses() {
    let oss = TestOss::start(&["objects-2"]).await;
    let client = data_plane(&oss);
    let t = target(&oss, "objects-2", SignatureVersion::V4);
    put(&oss, "objects-2", "before-rule", &[], "x").await;
    oss.emulator.state().set_rule(
        "objects-2",
        Some(StoredRule {
            algorithm: "KMS".into(),
            kms_master_key_id: "rule-key".into(),
            kms_data_encryption: String::new(),
        }),
    );
    put(&oss, "objects-2", "after-rule", &[], "x").await;
    put(
        &oss,
        "objects-2",
        "chose-aes",
        &[("x-oss-server-side-encryption", "AES256")],
        "x",
    )
    .await;
    assert_eq!(
        kind_of(&client, &t, &oss, "before-rule").await,
        ObjectEncryption::None,
        "the rule does not encrypt existing objects"
    );
    assert_eq!(
        kind_of(&client, &t, &oss, "after-rule").await,
        ObjectEncryption::Kms {
            key_id: "rule-key".into(),
            sm4: false
        }
    );
    assert_eq!(
        kind_of(&client, &t, &oss, "chose-aes").await,
        ObjectEncryption::Aes256
    );
}

#[tokio::test]
async fn listing_pages_with_url_encoded_keys_in_order() {
    let oss = TestOss::start(&["objects-3"]).await;
    let client = data_plane(&oss);
    oss.emulator
        .state()
        .seed_objects(
            "objects-3",
            Seed {
                prefix: "logs/".into(),
                count: 20,
                encryptions: vec![ObjectSse::none()],
                last_modified: None,
                size: 3,
            },
        )
        .unwrap();
    put(&oss, "objects-3", SPECIAL, &[], "x").await;
    put(&oss, "objects-3", "logs/a&b<c>", &[], "x").await;
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let t = target(&oss, "objects-3", version);
        let pages: Vec<Vec<String>> = client
            .object_pages(&t, &oss.credentials, "", 7)
            .map(|page| page.unwrap().objects.into_iter().map(|o| o.key).collect())
            .collect()
            .await;
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            [7, 7, 7, 1],
            "{version:?}"
        );
        let keys: Vec<String> = pages.concat();
        let mut expected: Vec<String> = (0..20).map(|i| format!("logs/{i:02}")).collect();
        expected.push("logs/a&b<c>".into());
        expected.insert(0, SPECIAL.into());
        assert_eq!(keys, expected, "{version:?}: every key once, ascending, decoded");
    }
    let t = target(&oss, "objects-3", SignatureVersion::V4);
    let page = client
        .list_objects(
            &t,
            &oss.credentials,
            &ObjectListRequest {
                prefix: "logs/1".into(),
                start_after: "logs/12".into(),
                max_keys: 100,
                ..ObjectListRequest::default()
            },
        )
        .await
        .unwrap()
        .value;
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "logs/13", "logs/14", "logs/15", "logs/16", "logs/17", "logs/18", "logs/19"
        ]
    );
    assert_eq!(page.objects[0].size, 3);
    assert_eq!(page.objects[0].object_type, "Normal");
    assert_eq!(page.key_count, 7);
    assert!(!page.is_truncated);
    // A key with a space, a `+` and non-ASCII is addressed by HeadObject as listed.
    assert_eq!(kind_of(&client, &t, &oss, SPECIAL).await, ObjectEncryption::None);
}

#[tokio::test]
async fn head_errors_come_typed_from_x_oss_err() {
    let oss = TestOss::start(&["objects-4"]).await;
    let client = data_plane(&oss);
    let t = target(&oss, "objects-4", SignatureVersion::V4);
    let error = client
        .head_object(&t, &oss.credentials, "missing")
        .await
        .unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(404), Some("NoSuchKey")));
    assert!(error.request_id().is_some_and(|id| id.len() == 24), "{error}");
    assert_eq!(error.service().unwrap().ec, "0026-00000001");
    assert_eq!(error.bucket, "objects-4");
    let wrong: CredentialsProvider = Credentials::new(ACCESS_KEY_ID, "wrong").into();
    let error = client.head_object(&t, &wrong, "missing").await.unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(403), Some("SignatureDoesNotMatch"))
    );
    let error = client
        .head_object(
            &target(&oss, "no-such-bucket", SignatureVersion::V4),
            &oss.credentials,
            "k",
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("NoSuchBucket"));
    let refused = client.head_object(&t, &oss.credentials, "..").await.unwrap_err();
    assert_eq!(refused.attempts, 0, "refused unsent: {refused}");
    assert_eq!(oss.emulator.state().total("HeadObject"), 3);
}

#[tokio::test]
async fn copy_takes_the_requests_encryption_never_the_sources() {
    let oss = TestOss::start(&["objects-5"]).await;
    let client = data_plane(&oss);
    let t = target(&oss, "objects-5", SignatureVersion::V4);
    let kms_sm4 = [
        ("x-oss-server-side-encryption", "KMS"),
        ("x-oss-server-side-data-encryption", "SM4"),
    ];
    put(&oss, "objects-5", SPECIAL, &kms_sm4, "data").await;
    // oss2 escapes `/` in the source key, the v2 SDK keeps it: both are accepted.
    let escaped = format!("/objects-5/{}", sign::uri_encode(SPECIAL, false));
    let kept = format!("/objects-5/{}", sign::uri_encode(SPECIAL, true));
    let (status, _) = put(
        &oss,
        "objects-5",
        "plain-copy",
        &[("x-oss-copy-source", &escaped)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        kind_of(&client, &t, &oss, "plain-copy").await,
        ObjectEncryption::None,
        "SSE is not inherited"
    );
    let source = client
        .head_object(&t, &oss.credentials, SPECIAL)
        .await
        .unwrap()
        .value;
    let (status, answer) = put(
        &oss,
        "objects-5",
        SPECIAL,
        &[
            ("x-oss-copy-source", &kept),
            ("x-oss-metadata-directive", "REPLACE"),
            ("x-oss-copy-source-if-match", &source.etag),
            ("x-oss-server-side-encryption", "KMS"),
            ("x-oss-server-side-encryption-key-id", "k9"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["x-oss-server-side-encryption-key-id"], "k9");
    let after = client
        .head_object(&t, &oss.credentials, SPECIAL)
        .await
        .unwrap()
        .value;
    assert_eq!(
        after.encryption,
        ObjectEncryption::Kms {
            key_id: "k9".into(),
            sm4: false
        }
    );
    assert_eq!(after.etag, source.etag, "an in-place copy keeps the ETag");
    assert_eq!(after.content_length, 4);
    let (status, _) = put(
        &oss,
        "objects-5",
        SPECIAL,
        &[
            ("x-oss-copy-source", &kept),
            ("x-oss-copy-source-if-match", "\"0000\""),
        ],
        "",
    )
    .await;
    assert_eq!(status, 412, "a changed source is not copied");
    let (status, _) = put(
        &oss,
        "objects-5",
        "x",
        &[("x-oss-copy-source", &kept), ("x-oss-metadata-directive", "MOVE")],
        "",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = put(
        &oss,
        "objects-5",
        "x",
        &[("x-oss-copy-source", "/objects-5/none")],
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(oss.emulator.state().total("CopyObject"), 5);
}

#[tokio::test]
async fn the_data_plane_has_a_limiter_of_its_own() {
    let oss = TestOss::start(&["objects-6"]).await;
    let management = oss.client();
    let data = management.data_plane(1000.0, 1000);
    put(&oss, "objects-6", "k", &[], "x").await;
    oss.emulator
        .state()
        .set_faults(oss_encryption_operator::emulator::Faults {
            throttle_rate: 1.0,
            ..Default::default()
        });
    let t = target(&oss, "objects-6", SignatureVersion::V4);
    let error = data.head_object(&t, &oss.credentials, "k").await.unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert!(data.throttles() >= 1);
    assert_eq!(
        management.throttles(),
        0,
        "data-plane throttles do not slow management calls"
    );
    assert!(data.current_rate() < 1000.0);
    assert_eq!(management.current_rate(), 1000.0);
    let kinds: Vec<&str> = EncryptionKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds.len(), 5);
}
