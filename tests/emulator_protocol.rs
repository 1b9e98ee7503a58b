//! The emulator on the wire, with hand-built requests the client would never send: every OSS
//! error it must answer, the signature checks, both V4 separators, and its admin API.

mod support;

use jiff::{SignedDuration, Timestamp};
use oss_encryption_operator::oss::credentials::Credentials;
use oss_encryption_operator::oss::sign::{SignatureVersion, Target, sign};
use oss_encryption_operator::oss::{ServiceError, content_md5};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

const BUCKET: &str = "wire-bucket";

/// A request to be signed and sent by hand.
struct Raw {
    method: &'static str,
    version: SignatureVersion,
    body: Option<String>,
    /// Content-MD5 to send (defaults to the body's).
    md5: Option<String>,
    at: Timestamp,
    secret: &'static str,
}

impl Raw {
    fn new(method: &'static str, version: SignatureVersion) -> Self {
        Self {
            method,
            version,
            body: None,
            md5: None,
            at: Timestamp::now(),
            secret: ACCESS_KEY_SECRET,
        }
    }

    fn put(version: SignatureVersion, body: &str) -> Self {
        Self {
            body: Some(body.to_owned()),
            ..Self::new("PUT", version)
        }
    }

    /// The signed headers and the Authorization value.
    fn signed(&self) -> (Vec<(String, String)>, String) {
        let mut headers = Vec::new();
        if let Some(body) = &self.body {
            headers.push(("Content-Type".to_owned(), "application/xml".to_owned()));
            let md5 = self.md5.clone().unwrap_or_else(|| content_md5(body.as_bytes()));
            headers.push(("Content-MD5".to_owned(), md5));
        }
        let query = [("encryption".to_owned(), String::new())];
        let auth = sign(
            self.version,
            &Credentials::new(ACCESS_KEY_ID, self.secret),
            Target {
                method: self.method,
                bucket: Some(BUCKET),
                key: None,
                query: &query,
                region: REGION,
            },
            &mut headers,
            self.at,
        );
        (headers, auth)
    }
}

struct Answer {
    status: u16,
    request_id_header: String,
    error: ServiceError,
}

async fn send(oss: &TestOss, raw: &Raw, authorization: Option<String>) -> Answer {
    let (headers, signed_auth) = raw.signed();
    let url = format!("{}/{BUCKET}/?encryption", oss.emulator.url());
    let mut request = reqwest::Client::new().request(raw.method.parse().unwrap(), url);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    if let Some(auth) = authorization.or(Some(signed_auth)).filter(|a| !a.is_empty()) {
        request = request.header("Authorization", auth);
    }
    if let Some(body) = &raw.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.expect("emulator answers");
    let status = response.status().as_u16();
    let request_id_header = response
        .headers()
        .get("x-oss-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.bytes().await.unwrap();
    Answer {
        status,
        error: ServiceError::from_response(status, &body, "", ""),
        request_id_header,
    }
}

fn rule(inner: &str) -> String {
    format!(
        "<ServerSideEncryptionRule><ApplyServerSideEncryptionByDefault>{inner}</ApplyServerSideEncryptionByDefault></ServerSideEncryptionRule>"
    )
}

async fn started() -> TestOss {
    oss_encryption_operator::install_tls_provider();
    TestOss::start(&[BUCKET]).await
}

#[tokio::test]
async fn put_body_errors_carry_oss_codes_and_request_ids() {
    let oss = started().await;
    let cases = [
        (
            rule("<SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>"),
            400,
            "InvalidArgument",
        ),
        (
            rule("<SSEAlgorithm>SM4</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>"),
            400,
            "InvalidArgument",
        ),
        (
            rule("<SSEAlgorithm>DES</SSEAlgorithm>"),
            400,
            "InvalidEncryptionAlgorithmError",
        ),
        ("<ServerSideEncryptionRule><oops".to_owned(), 400, "MalformedXML"),
        ("<Other/>".to_owned(), 400, "MalformedXML"),
    ];
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        for (body, status, code) in &cases {
            let answer = send(&oss, &Raw::put(version, body), None).await;
            assert_eq!(
                (answer.status, answer.error.code.as_str()),
                (*status, *code),
                "{body}"
            );
            assert_eq!(
                answer.error.request_id, answer.request_id_header,
                "body and header agree"
            );
            assert_eq!(answer.error.request_id.len(), 24);
            assert!(!answer.error.ec.is_empty());
        }
    }
    assert_eq!(
        oss.emulator.state().bucket(BUCKET).unwrap().rule,
        None,
        "nothing stored"
    );
}

#[tokio::test]
async fn content_md5_mismatch_is_invalid_digest() {
    let oss = started().await;
    let mut raw = Raw::put(SignatureVersion::V4, &rule("<SSEAlgorithm>AES256</SSEAlgorithm>"));
    raw.md5 = Some(content_md5(b"another body"));
    let answer = send(&oss, &raw, None).await;
    assert_eq!(
        (answer.status, answer.error.code.as_str()),
        (400, "InvalidDigest")
    );
}

#[tokio::test]
async fn tampered_signatures_are_refused() {
    let oss = started().await;
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let raw = Raw::new("GET", version);
        let (_, auth) = raw.signed();
        let mut tampered = auth.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'a' { 'b' } else { 'a' });
        let answer = send(&oss, &raw, Some(tampered)).await;
        assert_eq!(
            (answer.status, answer.error.code.as_str()),
            (403, "SignatureDoesNotMatch")
        );
        assert!(!answer.error.string_to_sign.is_empty());
        // The untampered request passes (404: the bucket has no rule yet).
        let ok = send(&oss, &raw, Some(auth)).await;
        assert_eq!(ok.error.code, "NoSuchServerSideEncryptionRule");
    }
}

#[tokio::test]
async fn a_wrong_secret_is_refused() {
    let oss = started().await;
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let raw = Raw {
            secret: "wrong-secret",
            ..Raw::new("DELETE", version)
        };
        let answer = send(&oss, &raw, None).await;
        assert_eq!(
            (answer.status, answer.error.code.as_str()),
            (403, "SignatureDoesNotMatch")
        );
    }
}

#[tokio::test]
async fn stale_dates_beyond_fifteen_minutes_are_too_skewed() {
    let oss = started().await;
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        for (minutes, expected) in [
            (-20, "RequestTimeTooSkewed"),
            (20, "RequestTimeTooSkewed"),
            (-14, "NoSuchServerSideEncryptionRule"),
        ] {
            let raw = Raw {
                at: Timestamp::now()
                    .checked_add(SignedDuration::from_mins(minutes))
                    .unwrap(),
                ..Raw::new("GET", version)
            };
            let answer = send(&oss, &raw, None).await;
            assert_eq!(answer.error.code, expected, "{version:?} {minutes} min");
        }
    }
}

#[tokio::test]
async fn v4_accepts_both_separators_like_real_oss() {
    let oss = started().await;
    let raw = Raw::new("GET", SignatureVersion::V4);
    let (_, compact) = raw.signed();
    assert!(compact.contains(",Signature="));
    let spaced = compact.replace(",Signature=", ", Signature=");
    for auth in [compact, spaced] {
        let answer = send(&oss, &raw, Some(auth.clone())).await;
        assert_eq!(answer.error.code, "NoSuchServerSideEncryptionRule", "{auth}");
    }
}

#[tokio::test]
async fn missing_or_garbled_authorization() {
    let oss = started().await;
    let raw = Raw::new("GET", SignatureVersion::V4);
    let missing = send(&oss, &raw, Some(String::new())).await;
    assert_eq!(
        (missing.status, missing.error.code.as_str()),
        (403, "AccessDenied")
    );
    for garbled in [
        "Bearer abc",
        "OSS4-HMAC-SHA256 Credential=x,Signature=y",
        "OSS nocolon",
    ] {
        let answer = send(&oss, &raw, Some(garbled.to_owned())).await;
        assert_eq!(
            (answer.status, answer.error.code.as_str()),
            (400, "InvalidArgument"),
            "{garbled}"
        );
    }
}

#[tokio::test]
async fn only_the_encryption_sub_resource_is_served() {
    let oss = started().await;
    let response = reqwest::Client::new()
        .get(format!("{}/{BUCKET}/?acl", oss.emulator.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 501);
    assert!(response.headers().contains_key("x-oss-request-id"));
}

#[tokio::test]
async fn the_admin_api_manages_buckets_rules_faults_and_counters() {
    let oss = started().await;
    let http = reqwest::Client::new();
    let admin = format!("{}/_emulator", oss.emulator.url());
    let status = |r: reqwest::Response| r.status().as_u16();

    let created = http
        .put(format!("{admin}/buckets/admin-made"))
        .json(&serde_json::json!({"region": "cn-beijing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(created), 204);
    assert_eq!(
        oss.emulator.state().bucket("admin-made").unwrap().region,
        "cn-beijing"
    );
    let bad_name = http
        .put(format!("{admin}/buckets/Bad_Name"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(bad_name), 400);

    let drift = http
        .put(format!("{admin}/buckets/{BUCKET}/rule"))
        .json(&serde_json::json!({"algorithm": "KMS", "kmsMasterKeyId": "behind-your-back"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(drift), 204);
    let got = oss
        .client()
        .get_encryption(&oss.target(BUCKET), &oss.credentials)
        .await
        .unwrap();
    assert_eq!(
        got.value.unwrap().kms_master_key_id.as_deref(),
        Some("behind-your-back")
    );

    let counters: serde_json::Value = http
        .get(format!("{admin}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["GetBucketEncryption"]["200"], 1, "{counters}");

    let bad_faults = http
        .put(format!("{admin}/faults"))
        .json(&serde_json::json!({"throttleRate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(bad_faults), 400);
    let faults = http
        .put(format!("{admin}/faults"))
        .json(&serde_json::json!({"throttleRate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(faults), 204);
    let throttled = send(&oss, &Raw::new("GET", SignatureVersion::V4), None).await;
    assert_eq!(
        (throttled.status, throttled.error.code.as_str()),
        (503, "MetaOperationQpsLimitExceeded")
    );
    assert_eq!(
        status(http.delete(format!("{admin}/faults")).send().await.unwrap()),
        204
    );

    let cleared = http
        .delete(format!("{admin}/buckets/{BUCKET}/rule"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(cleared), 204);
    assert_eq!(oss.emulator.state().bucket(BUCKET).unwrap().rule, None);
    assert_eq!(
        status(http.delete(format!("{admin}/counters")).send().await.unwrap()),
        204
    );
    assert!(oss.emulator.state().counters().is_empty());
}

#[tokio::test]
async fn a_qps_cap_answers_503_throttling() {
    let oss = started().await;
    oss.emulator
        .state()
        .set_faults(oss_encryption_operator::emulator::Faults {
            qps_limit: Some(2),
            ..Default::default()
        });
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            send(&oss, &Raw::new("GET", SignatureVersion::V4), None)
                .await
                .error
                .code,
        );
    }
    assert_eq!(
        codes,
        [
            "NoSuchServerSideEncryptionRule",
            "NoSuchServerSideEncryptionRule",
            "MetaOperationQpsLimitExceeded",
            "MetaOperationQpsLimitExceeded"
        ]
    );
}

/// A V1 or V4 request signed for `region` (V4 scope) and sent with `host` as its Host.
async fn send_as_host(
    oss: &TestOss,
    version: SignatureVersion,
    host: &str,
    bucket: Option<&str>,
    region: &str,
) -> (u16, ServiceError) {
    let mut headers = Vec::new();
    let query = match bucket {
        Some(_) => vec![("encryption".to_owned(), String::new())],
        None => Vec::new(),
    };
    let auth = sign(
        version,
        &Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET),
        Target {
            method: "GET",
            bucket,
            key: None,
            query: &query,
            region,
        },
        &mut headers,
        Timestamp::now(),
    );
    let path = if bucket.is_some() { "/?encryption" } else { "/" };
    let mut request = reqwest::Client::new()
        .get(format!("{}{path}", oss.emulator.url()))
        .header("host", host)
        .header("Authorization", auth);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let response = request.send().await.expect("emulator answers");
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, ServiceError::from_response(status, &body, "", ""))
}

#[tokio::test]
async fn a_bucket_addressed_through_another_regions_endpoint_is_refused_for_v1_too() {
    let oss = started().await;
    for version in [SignatureVersion::V1, SignatureVersion::V4] {
        let (status, error) = send_as_host(
            &oss,
            version,
            &format!("{BUCKET}.oss-cn-shanghai.aliyuncs.com"),
            Some(BUCKET),
            "cn-shanghai",
        )
        .await;
        assert_eq!(
            (status, error.code.as_str()),
            (403, "AccessDenied"),
            "{version:?}: {error:?}"
        );
        assert!(
            error
                .message
                .contains("must be addressed using the specified endpoint"),
            "{error:?}"
        );
        // The bucket's own region's endpoint (public or internal) is fine.
        for host in [
            format!("{BUCKET}.oss-{REGION}.aliyuncs.com"),
            format!("{BUCKET}.oss-{REGION}-internal.aliyuncs.com"),
        ] {
            let (status, error) = send_as_host(&oss, version, &host, Some(BUCKET), REGION).await;
            assert_eq!(
                (status, error.code.as_str()),
                (404, "NoSuchServerSideEncryptionRule"),
                "{version:?} {host}"
            );
        }
    }
}

#[tokio::test]
async fn list_buckets_v4_scope_must_be_the_endpoints_region() {
    let oss = started().await;
    let (status, error) = send_as_host(
        &oss,
        SignatureVersion::V4,
        "oss-cn-shanghai.aliyuncs.com",
        None,
        "cn-hangzhou",
    )
    .await;
    assert_eq!(
        (status, error.code.as_str()),
        (403, "SignatureDoesNotMatch"),
        "{error:?}"
    );
    assert!(error.message.contains("signing region"), "{error:?}");
    let (status, _) = send_as_host(
        &oss,
        SignatureVersion::V4,
        "oss-cn-shanghai.aliyuncs.com",
        None,
        "cn-shanghai",
    )
    .await;
    assert_eq!(status, 200, "the endpoint's own region");
    let (status, error) = send_as_host(
        &oss,
        SignatureVersion::V4,
        &oss.emulator.endpoint().authority(),
        None,
        "NOT_A_REGION",
    )
    .await;
    assert_eq!(
        status, 403,
        "an IP endpoint stands for any region, not for none: {error:?}"
    );
}
