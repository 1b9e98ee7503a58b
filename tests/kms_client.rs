//! The KMS client against the emulator's DescribeKey: ids, aliases and ARNs, STS tokens, the
//! documented error codes, retries on throttling, the allow-list, redirects, and the checker's
//! cache (one call per key and TTL, however many callers at once).

mod support;

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use oss_encryption_operator::emulator::{EmulatorConfig, Faults, KmsKey};
use oss_encryption_operator::kms::{KeyChecker, KeyProblem, KmsClient, KmsConfig, KmsErrorKind, Verdict};
use oss_encryption_operator::oss::{Classification, Credentials, CredentialsProvider, Endpoint};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss, fast_retries};

async fn kms_with(keys: &[(&str, KmsKey)]) -> TestOss {
    TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        kms_keys: keys.iter().map(|(id, k)| (id.to_string(), k.clone())).collect(),
        ..EmulatorConfig::default()
    })
    .await
}

fn client_for(oss: &TestOss) -> KmsClient {
    let mut config = KmsConfig {
        retry: fast_retries(3),
        endpoint: Some(oss.emulator.endpoint()),
        ..KmsConfig::default()
    };
    config.allow_list.allow(oss.emulator.endpoint().authority());
    KmsClient::new(config).unwrap()
}

fn key(region: &str, aliases: &[&str]) -> KmsKey {
    KmsKey {
        region: region.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..KmsKey::default()
    }
}

#[tokio::test]
async fn describes_a_key_by_id_alias_and_arn() {
    let oss = kms_with(&[("key-abc", key(REGION, &["alias/payments"]))]).await;
    let client = client_for(&oss);
    for name in [
        "key-abc",
        "alias/payments",
        "acs:kms:cn-hangzhou:1540355698840000:key/key-abc",
    ] {
        let reply = client.describe_key(REGION, name, &oss.credentials).await.unwrap();
        assert_eq!(reply.value.key_id, "key-abc", "{name}");
        assert_eq!(reply.value.key_state, "Enabled");
        assert_eq!(reply.value.region(), Some(REGION));
        assert!(!reply.request_id.is_empty());
        assert_eq!(reply.attempts, 1);
    }
    assert_eq!(oss.emulator.state().total("DescribeKey"), 3);
}

#[tokio::test]
async fn every_attempt_is_observed_with_its_outcome_and_code() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let mut config = KmsConfig {
        retry: fast_retries(3),
        endpoint: Some(oss.emulator.endpoint()),
        observer: Some(oss_encryption_operator::kms::KmsObserver(std::sync::Arc::new(
            move |outcome: &str, code: &str| record.lock().unwrap().push(format!("{outcome} {code}")),
        ))),
        ..KmsConfig::default()
    };
    config.allow_list.allow(oss.emulator.endpoint().authority());
    let client = KmsClient::new(config).unwrap();
    client
        .describe_key(REGION, "key-abc", &oss.credentials)
        .await
        .unwrap();
    client
        .describe_key(REGION, "key-none", &oss.credentials)
        .await
        .unwrap_err();
    assert_eq!(*seen.lock().unwrap(), ["200 ", "404 Forbidden.KeyNotFound"]);
}

#[tokio::test]
async fn sts_credentials_sign_with_their_token() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    oss.emulator.state().add_sts_session(
        "STS.session".into(),
        oss_encryption_operator::emulator::state::StsSession {
            secret: "sts-secret".into(),
            token: "CAIS-token".into(),
            expiration: jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600),
        },
    );
    let client = client_for(&oss);
    let good: CredentialsProvider = Credentials::new("STS.session", "sts-secret")
        .with_security_token("CAIS-token")
        .into();
    assert!(client.describe_key(REGION, "key-abc", &good).await.is_ok());
    let wrong: CredentialsProvider = Credentials::new("STS.session", "sts-secret")
        .with_security_token("CAIS-other")
        .into();
    let error = client.describe_key(REGION, "key-abc", &wrong).await.unwrap_err();
    assert_eq!(error.code(), Some("InvalidSecurityToken.MismatchWithAccessKey"));
}

#[tokio::test]
async fn documented_errors_come_back_typed_with_request_ids() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    let client = client_for(&oss);
    let missing = client
        .describe_key(REGION, "key-missing", &oss.credentials)
        .await
        .unwrap_err();
    assert!(missing.is_not_found());
    assert_eq!(missing.code(), Some("Forbidden.KeyNotFound"));
    assert!(missing.request_id().is_some());
    assert_eq!(missing.attempts, 1, "not found is not retried");
    let alias = client
        .describe_key(REGION, "alias/none", &oss.credentials)
        .await
        .unwrap_err();
    assert_eq!(alias.code(), Some("Forbidden.AliasNotFound"));

    let wrong: CredentialsProvider = Credentials::new(ACCESS_KEY_ID, "not-the-secret").into();
    let error = client.describe_key(REGION, "key-abc", &wrong).await.unwrap_err();
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"));
    assert!(!error.to_string().contains("not-the-secret"), "{error}");
    let unknown: CredentialsProvider = Credentials::new("LTAI-unknown", "x").into();
    let error = client
        .describe_key(REGION, "key-abc", &unknown)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("InvalidAccessKeyId.NotFound"));

    oss.emulator.state().set_kms_denied(ACCESS_KEY_ID, true);
    let denied = client
        .describe_key(REGION, "key-abc", &oss.credentials)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Some("Forbidden.NoPermission"));
    assert_eq!(denied.classification(), Classification::Terminal);
    let text = denied.to_string();
    assert!(
        text.contains("key-abc") && text.contains(REGION) && text.contains("403"),
        "{text}"
    );
}

#[tokio::test]
async fn throttling_and_unavailability_are_retried_then_reported() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    let client = client_for(&oss);
    oss.emulator.state().set_faults(Faults {
        kms_throttle_rate: 1.0,
        ..Faults::default()
    });
    let error = client
        .describe_key(REGION, "key-abc", &oss.credentials)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("Throttling"));
    assert_eq!(error.attempts, 3, "retried up to the limit");
    assert_eq!(oss.emulator.state().total("DescribeKey"), 3);
    oss.emulator.state().set_faults(Faults {
        kms_error_rate: 1.0,
        ..Faults::default()
    });
    let error = client
        .describe_key(REGION, "key-abc", &oss.credentials)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("ServiceUnavailableTemporary"));
    assert_eq!(error.classification(), Classification::Retryable);
}

#[tokio::test]
async fn a_skewed_clock_is_corrected_from_the_answers_date() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    oss.emulator
        .state()
        .set_clock_offset(jiff::SignedDuration::from_secs(40 * 60));
    let client = client_for(&oss);
    let first = client
        .describe_key(REGION, "key-abc", &oss.credentials)
        .await
        .unwrap();
    assert_eq!(
        first.attempts, 2,
        "refused once (InvalidTimeStamp.Expired), then corrected"
    );
    let second = client
        .describe_key(REGION, "key-abc", &oss.credentials)
        .await
        .unwrap();
    assert_eq!(second.attempts, 1, "the correction is kept");
    let counts = oss.emulator.state().counters()["DescribeKey"].clone();
    assert_eq!((counts.get(&400), counts.get(&200)), (Some(&1), Some(&2)));
}

#[tokio::test]
async fn endpoints_outside_the_allow_list_get_no_request() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    let client = KmsClient::new(KmsConfig {
        endpoint: Some(oss.emulator.endpoint()),
        ..KmsConfig::default()
    })
    .unwrap();
    let error = client
        .describe_key(REGION, "key-abc", &oss.credentials)
        .await
        .unwrap_err();
    assert!(matches!(error.kind, KmsErrorKind::Endpoint(_)), "{error}");
    assert_eq!(error.attempts, 0);
    assert_eq!(oss.emulator.state().total("DescribeKey"), 0);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(|| async {
        let mut response = axum::response::Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        response
            .headers_mut()
            .insert("location", HeaderValue::from_static("http://attacker.invalid/"));
        response
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut config = KmsConfig {
        endpoint: Some(Endpoint::parse(&format!("http://{authority}")).unwrap()),
        ..KmsConfig::default()
    };
    config.allow_list.allow(&authority);
    let client = KmsClient::new(config).unwrap();
    let credentials: CredentialsProvider = Credentials::new("id", "secret").into();
    let error = client.describe_key(REGION, "k", &credentials).await.unwrap_err();
    assert!(
        matches!(error.kind, KmsErrorKind::Redirect { status: 307, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn the_checker_asks_once_per_key_and_ttl_whatever_the_concurrency() {
    let mut disabled = key(REGION, &[]);
    disabled.state = "Disabled".into();
    let oss = kms_with(&[
        ("key-a", key(REGION, &[])),
        ("key-b", disabled),
        ("key-far", key("cn-beijing", &[])),
    ])
    .await;
    let checker = KeyChecker::new(client_for(&oss), Duration::from_secs(3600));
    let mut calls = Vec::new();
    for i in 0..300 {
        let name = ["key-a", "key-b", "key-far"][i % 3];
        let (checker, credentials) = (checker.clone(), oss.credentials.clone());
        calls.push(tokio::spawn(async move {
            (name, checker.check(REGION, name, &credentials).await)
        }));
    }
    for call in calls {
        let (name, verdict) = call.await.unwrap();
        match (name, verdict) {
            ("key-a", Verdict::Usable { key, .. }) => assert_eq!(key.key_id, "key-a"),
            ("key-b", Verdict::NotUsable { problems, .. }) => {
                assert!(
                    matches!(&problems[..], [KeyProblem::NotEnabled { state, .. }] if state == "Disabled")
                )
            }
            ("key-far", Verdict::NotUsable { problems, .. }) => {
                assert!(matches!(&problems[..], [KeyProblem::WrongRegion { .. }]))
            }
            (name, verdict) => panic!("{name}: {verdict:?}"),
        }
    }
    assert_eq!(oss.emulator.state().total("DescribeKey"), 3, "one call per key");
    let missing = checker.check(REGION, "key-none", &oss.credentials).await;
    assert!(
        matches!(missing, Verdict::NotUsable { ref problems, .. } if problems == &[KeyProblem::NotFound])
    );

    // A check that cannot run is a failure, not a pass, and is asked again next time when transient.
    oss.emulator.state().set_faults(Faults {
        kms_error_rate: 1.0,
        ..Faults::default()
    });
    let before = oss.emulator.state().total("DescribeKey");
    assert!(matches!(
        checker.check(REGION, "key-new", &oss.credentials).await,
        Verdict::CheckFailed(_)
    ));
    assert!(matches!(
        checker.check(REGION, "key-new", &oss.credentials).await,
        Verdict::CheckFailed(_)
    ));
    assert_eq!(
        oss.emulator.state().total("DescribeKey") - before,
        6,
        "not cached: 3 attempts each"
    );
}

#[tokio::test]
async fn the_cache_expires_after_its_ttl() {
    let oss = kms_with(&[("key-a", key(REGION, &[]))]).await;
    let checker = KeyChecker::new(client_for(&oss), Duration::from_millis(200));
    assert!(checker.check(REGION, "key-a", &oss.credentials).await.is_usable());
    oss.emulator.state().put_kms_key(
        "key-a",
        KmsKey {
            state: "PendingDeletion".into(),
            ..key(REGION, &[])
        },
    );
    assert!(
        checker.check(REGION, "key-a", &oss.credentials).await.is_usable(),
        "cached"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let verdict = checker.check(REGION, "key-a", &oss.credentials).await;
    assert!(
        verdict.describe().contains("PendingDeletion"),
        "{}",
        verdict.describe()
    );
}

#[tokio::test]
async fn a_kms_clock_beyond_the_bound_is_a_skew_error_naming_the_endpoint_and_the_offset() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    oss.emulator
        .state()
        .set_clock_offset(jiff::SignedDuration::from_hours(24 * 10));
    let client = client_for(&oss);
    let error = client
        .describe_key(REGION, "key-abc", &oss.credentials)
        .await
        .expect_err("a server clock 10 days off is not followed");
    let text = error.to_string();
    assert!(
        text.contains(&oss.emulator.endpoint().authority().to_string()),
        "{text}"
    );
    assert!(text.contains("240h"), "{text}");
    assert_eq!(error.code(), Some("InvalidTimeStamp.Expired"));
}

/// A DescribeKey request signed by hand with ACS3 (as the client signs it), sent raw; `signed`
/// names the headers that go into the signature (`None`: every header, as the client does).
async fn raw_describe_key(
    oss: &TestOss,
    credentials: &Credentials,
    date: jiff::Timestamp,
    nonce: &str,
    signed: Option<&[&str]>,
) -> (u16, String) {
    use oss_encryption_operator::kms::{request, sign};
    let host = oss.emulator.endpoint().authority();
    let date = date.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut out = request::describe_key(&request::Inputs {
        credentials,
        host: &host,
        key_id: "key-abc",
        date: &date,
        nonce,
        user_agent: "test",
    });
    if let Some(names) = signed {
        out.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let canonical = sign::canonical_request(&sign::Request {
            method: "POST",
            path: "/",
            query: &out.query,
            headers: &out.headers,
            signed_headers: &names,
            payload_hash: sign::EMPTY_SHA256,
        });
        let signature = sign::acs3_signature(
            credentials.access_key_secret(),
            &sign::string_to_sign(sign::ACS3, &canonical),
        );
        out.headers.push((
            "authorization".into(),
            format!(
                "{} Credential={},SignedHeaders={},Signature={signature}",
                sign::ACS3,
                credentials.access_key_id(),
                names.join(";")
            ),
        ));
    }
    oss_encryption_operator::install_tls_provider();
    let mut http = reqwest::Client::new()
        .post(format!("{}/?{}", oss.emulator.url(), out.query_string()))
        .header("content-length", "0");
    for (name, value) in out.headers.iter().filter(|(n, _)| n != "host") {
        http = http.header(name, value);
    }
    let response = http.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["Code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn acs3_must_sign_its_date_and_nonce() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    let credentials = Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let now = jiff::Timestamp::now();
    let (status, code) =
        raw_describe_key(&oss, &credentials, now, "0123456789abcdef0123456789abcdef", None).await;
    assert_eq!(
        (status, code.as_str()),
        (200, ""),
        "signed as the client signs: accepted"
    );
    for names in [
        &[][..],
        &["host", "x-acs-action", "x-acs-version"][..],
        &["host", "x-acs-date"][..],
    ] {
        let nonce = format!("{:032x}", fastrand::u128(..));
        let (status, code) = raw_describe_key(&oss, &credentials, now, &nonce, Some(names)).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "IncompleteSignature"),
            "SignedHeaders={names:?} leaves the date or the nonce unsigned"
        );
    }
}

#[tokio::test]
async fn a_reused_nonce_is_refused() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    let credentials = Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let now = jiff::Timestamp::now();
    let nonce = "feedfacefeedfacefeedfacefeedface";
    let first = raw_describe_key(&oss, &credentials, now, nonce, None).await;
    assert_eq!(first.0, 200);
    let replayed = raw_describe_key(&oss, &credentials, now, nonce, None).await;
    assert_eq!((replayed.0, replayed.1.as_str()), (400, "SignatureNonceUsed"));
    let fresh = raw_describe_key(&oss, &credentials, now, "00000000feedface00000000feedface", None).await;
    assert_eq!(fresh.0, 200, "another nonce is fine");
}

#[tokio::test]
async fn sts_expiry_is_judged_by_the_emulators_clock() {
    let oss = kms_with(&[("key-abc", key(REGION, &[]))]).await;
    let expiration = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap();
    oss.emulator.state().add_sts_session(
        "STS.Temporary".into(),
        oss_encryption_operator::emulator::state::StsSession {
            secret: "temporary-secret".into(),
            token: "temporary-token".into(),
            expiration,
        },
    );
    let credentials =
        Credentials::new("STS.Temporary", "temporary-secret").with_security_token("temporary-token");
    let (status, _) = raw_describe_key(
        &oss,
        &credentials,
        jiff::Timestamp::now(),
        "aa00000000000000000000000000aa01",
        None,
    )
    .await;
    assert_eq!(status, 200, "valid now");
    // Two hours later on the emulator's clock (the request dated accordingly): expired.
    let later = jiff::SignedDuration::from_hours(2);
    oss.emulator.state().set_clock_offset(later);
    let at = jiff::Timestamp::now().checked_add(later).unwrap();
    let (status, code) =
        raw_describe_key(&oss, &credentials, at, "aa00000000000000000000000000aa02", None).await;
    assert_eq!((status, code.as_str()), (400, "InvalidSecurityToken.Expired"));
}
