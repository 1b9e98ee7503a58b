//! The OSS client against the emulator over real HTTP: every rule, both signature versions,
//! every error the operator meets, retries, timeouts, clock skew and the QPS limiter.

mod support;

use std::time::Duration;

use jiff::SignedDuration;
use oss_encryption_operator::emulator::{EmulatorConfig, Faults, StoredRule};
use oss_encryption_operator::oss::{
    BucketTarget, Classification, ClientConfig, Credentials, CredentialsProvider, DataEncryption,
    EncryptionRule, Endpoint, OssClient, OssErrorKind, SignatureVersion, SseAlgorithm,
};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss, fast_retries};

fn every_rule() -> Vec<EncryptionRule> {
    vec![
        EncryptionRule::new(SseAlgorithm::Aes256),
        EncryptionRule::kms(None, None),
        EncryptionRule::kms(Some("9468da86-3509-4f8d-a61e-6eab1eac0000"), None),
        EncryptionRule::kms(None, Some(DataEncryption::Sm4)),
        EncryptionRule::kms(
            Some("9468da86-3509-4f8d-a61e-6eab1eac0000"),
            Some(DataEncryption::Sm4),
        ),
        EncryptionRule::new(SseAlgorithm::Sm4),
    ]
}

fn stored(rule: &EncryptionRule) -> StoredRule {
    StoredRule::from(oss_encryption_operator::oss::xml::RawRule::from(rule))
}

/// Puts a rule and asserts that GET returns it.
async fn put_and_read_back(
    client: &OssClient,
    target: &BucketTarget,
    credentials: &CredentialsProvider,
    rule: &EncryptionRule,
) {
    client.put_encryption(target, credentials, rule).await.unwrap();
    let read = client.get_encryption(target, credentials).await.unwrap();
    assert_eq!(read.value.as_ref(), Some(rule));
}

#[tokio::test]
async fn every_rule_is_written_read_and_deleted_with_v1_and_v4() {
    let oss = TestOss::start(&["rules-bucket"]).await;
    let client = oss.client();
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let target = oss.target("rules-bucket").with_signature_version(version);
        for rule in every_rule() {
            let put = client
                .put_encryption(&target, &oss.credentials, &rule)
                .await
                .unwrap();
            assert_eq!(put.request_id.len(), 24, "request id returned on success");
            assert_eq!(
                oss.emulator.state().bucket("rules-bucket").unwrap().rule,
                Some(stored(&rule)),
                "OSS state after PUT {rule} ({version:?})"
            );
            let got = client.get_encryption(&target, &oss.credentials).await.unwrap();
            assert_eq!(got.value, Some(rule.clone()), "{version:?}");
            assert_eq!(got.attempts, 1);
            assert_ne!(got.request_id, put.request_id);
        }
        // `None` is a delete: the rule is gone and GET reports none (404 NoSuchServerSideEncryptionRule).
        let deleted = client.delete_encryption(&target, &oss.credentials).await.unwrap();
        assert!(!deleted.request_id.is_empty());
        assert_eq!(oss.emulator.state().bucket("rules-bucket").unwrap().rule, None);
        let none = client.get_encryption(&target, &oss.credentials).await.unwrap();
        assert_eq!(none.value, None);
        assert!(!none.request_id.is_empty(), "the 404's request id is returned");
        // Deleting again still succeeds.
        client.delete_encryption(&target, &oss.credentials).await.unwrap();
    }
    let counters = oss.emulator.state().counters();
    assert_eq!(counters["PutBucketEncryption"][&200], 12);
    assert_eq!(counters["GetBucketEncryption"][&200], 12);
    assert_eq!(counters["GetBucketEncryption"][&404], 2);
    assert_eq!(counters["DeleteBucketEncryption"][&204], 4);
}

#[tokio::test]
async fn a_rule_set_behind_the_clients_back_is_read_by_local_name() {
    let oss = TestOss::start(&["drifted"]).await;
    oss.emulator.state().set_rule(
        "drifted",
        Some(StoredRule {
            algorithm: "KMS".into(),
            kms_master_key_id: "".into(),
            kms_data_encryption: "SM4".into(),
        }),
    );
    let got = oss
        .client()
        .get_encryption(&oss.target("drifted"), &oss.credentials)
        .await
        .unwrap();
    assert_eq!(
        got.value,
        Some(EncryptionRule::kms(None, Some(DataEncryption::Sm4)))
    );
}

#[tokio::test]
async fn an_unknown_algorithm_from_oss_is_a_bad_response_with_the_request_id() {
    let oss = TestOss::start(&["odd"]).await;
    oss.emulator.state().set_rule(
        "odd",
        Some(StoredRule {
            algorithm: "AES512".into(),
            ..StoredRule::default()
        }),
    );
    let err = oss
        .client()
        .get_encryption(&oss.target("odd"), &oss.credentials)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, OssErrorKind::BadResponse { status: 200, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("AES512"), "{err}");
    assert!(err.request_id().is_some());
    assert_eq!(err.classification(), Classification::Terminal);
}

#[tokio::test]
async fn invalid_rules_are_refused_without_a_request() {
    let oss = TestOss::start(&["b-refused"]).await;
    let mut rule = EncryptionRule::new(SseAlgorithm::Aes256);
    rule.kms_master_key_id = Some("key".into());
    let err = oss
        .client()
        .put_encryption(&oss.target("b-refused"), &oss.credentials, &rule)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, OssErrorKind::InvalidRule(_)), "{err}");
    assert_eq!(err.attempts, 0);
    assert!(oss.emulator.state().counters().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn missing_bucket_is_no_such_bucket_with_request_id() {
    let oss = TestOss::start(&[]).await;
    let client = oss.client();
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let target = oss.target("no-such-bucket").with_signature_version(version);
        let err = client
            .get_encryption(&target, &oss.credentials)
            .await
            .unwrap_err();
        assert!(err.is_no_such_bucket(), "{err}");
        assert_eq!(err.status(), Some(404));
        assert_eq!(err.request_id().unwrap().len(), 24);
        assert_eq!(err.service().unwrap().ec, "0015-00000101");
        assert_eq!(err.classification(), Classification::Terminal);
        assert_eq!(err.attempts, 1, "terminal errors are not retried");
        let text = err.to_string();
        assert!(
            text.contains("no-such-bucket") && text.contains("GetBucketEncryption"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn wrong_secret_is_signature_does_not_match_with_string_to_sign() {
    let oss = TestOss::start(&["sig-bucket"]).await;
    let wrong: CredentialsProvider = Credentials::new(ACCESS_KEY_ID, "not-the-secret").into();
    let client = oss.client();
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let target = oss.target("sig-bucket").with_signature_version(version);
        let err = client.get_encryption(&target, &wrong).await.unwrap_err();
        let service = err.service().expect("OSS answered");
        assert_eq!(
            (service.status, service.code.as_str()),
            (403, "SignatureDoesNotMatch")
        );
        let expected_start = match version {
            SignatureVersion::V1 => "GET\n",
            SignatureVersion::V4 => "OSS4-HMAC-SHA256\n",
        };
        assert!(service.string_to_sign.starts_with(expected_start), "{service:?}");
        assert!(err.request_id().is_some());
        assert!(!err.to_string().contains("not-the-secret"), "no secret in errors");
        assert!(
            !format!("{err:?}").contains("not-the-secret"),
            "no secret in Debug"
        );
    }
}

#[tokio::test]
async fn unknown_key_is_invalid_access_key_id() {
    let oss = TestOss::start(&["ak-bucket"]).await;
    let unknown: CredentialsProvider = Credentials::new("LTAI5tUnknown", ACCESS_KEY_SECRET).into();
    let err = oss
        .client()
        .get_encryption(&oss.target("ak-bucket"), &unknown)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidAccessKeyId"));
    assert_eq!(err.status(), Some(403));
    assert!(err.request_id().is_some());
}

#[tokio::test]
async fn denied_key_is_access_denied() {
    let oss = TestOss::start(&["private"]).await;
    oss.emulator
        .state()
        .set_access_denied("private", ACCESS_KEY_ID, true);
    let err = oss
        .client()
        .get_encryption(&oss.target("private"), &oss.credentials)
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("AccessDenied")));
    assert_eq!(err.classification(), Classification::Terminal);
}

#[tokio::test]
async fn a_security_token_with_a_long_lived_key_is_invalid_security_token() {
    let oss = TestOss::start(&["tok-bucket"]).await;
    let with_token: CredentialsProvider = Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        .with_security_token("CAIS-forged")
        .into();
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let target = oss.target("tok-bucket").with_signature_version(version);
        let err = oss
            .client()
            .get_encryption(&target, &with_token)
            .await
            .unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (Some(403), Some("InvalidSecurityToken"))
        );
    }
}

#[tokio::test]
async fn wrong_region_in_the_v4_scope_is_refused() {
    let oss = TestOss::start(&["region-bucket"]).await;
    let target = BucketTarget::new("region-bucket", "cn-shanghai")
        .unwrap()
        .with_endpoint(oss.emulator.endpoint());
    let err = oss
        .client()
        .get_encryption(&target, &oss.credentials)
        .await
        .unwrap_err();
    let service = err.service().unwrap();
    assert_eq!(service.status, 403);
    assert!(service.message.contains("signing region"), "{service:?}");
    // V1 carries no region, so the same request signed with V1 passes.
    let v1 = target.with_signature_version(SignatureVersion::V1);
    assert!(oss.client().get_encryption(&v1, &oss.credentials).await.is_ok());
}

#[tokio::test]
async fn clock_skew_is_refused_then_corrected_from_the_server_date() {
    let oss = TestOss::start(&["skew-bucket"]).await;
    oss.emulator
        .state()
        .set_clock_offset(SignedDuration::from_mins(30));
    let target = oss.target("skew-bucket");

    let no_retry = OssClient::new(ClientConfig {
        retry: fast_retries(1),
        ..oss.config()
    })
    .unwrap();
    let err = no_retry
        .get_encryption(&target, &oss.credentials)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(403), Some("RequestTimeTooSkewed"))
    );
    assert_eq!(err.classification(), Classification::Retryable);

    let client = oss.client();
    let reply = client.get_encryption(&target, &oss.credentials).await.unwrap();
    assert_eq!(reply.attempts, 2, "one refused attempt, one corrected");
    let learned = client.clock_offset(&oss.emulator.endpoint()).as_secs();
    assert!((learned - 1800).abs() <= 5, "learned offset {learned}s");
    // The correction sticks: the next call succeeds first time.
    assert_eq!(
        client
            .get_encryption(&target, &oss.credentials)
            .await
            .unwrap()
            .attempts,
        1
    );
}

#[tokio::test]
async fn throttling_is_retried_then_given_up_after_the_cap() {
    let oss = TestOss::start(&["busy"]).await;
    oss.emulator.state().set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    let client = OssClient::new(ClientConfig {
        retry: fast_retries(4),
        ..oss.config()
    })
    .unwrap();
    let err = client
        .get_encryption(&oss.target("busy"), &oss.credentials)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("MetaOperationQpsLimitExceeded"))
    );
    assert_eq!(err.classification(), Classification::Throttled);
    assert_eq!(err.attempts, 4);
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    assert_eq!(
        oss.emulator.state().counters()["GetBucketEncryption"][&503],
        4,
        "exactly the cap"
    );
}

#[tokio::test]
async fn injected_503s_500s_and_resets_are_recovered_from() {
    let oss = TestOss::start(&["flaky"]).await;
    oss.emulator.state().set_faults(Faults {
        throttle_rate: 0.2,
        internal_error_rate: 0.2,
        reset_rate: 0.2,
        ..Faults::default()
    });
    // With ~49% of attempts failing, 30 attempts leave a failure chance of about 1e-9 per call.
    let client = OssClient::new(ClientConfig {
        retry: fast_retries(30),
        ..oss.config()
    })
    .unwrap();
    let target = oss.target("flaky");
    let rule = EncryptionRule::new(SseAlgorithm::Sm4);
    for _ in 0..20 {
        put_and_read_back(&client, &target, &oss.credentials, &rule).await;
    }
    let counters = oss.emulator.state().counters();
    let gets = &counters["GetBucketEncryption"];
    assert_eq!(gets[&200], 20);
    let failures: u64 = counters
        .values()
        .flat_map(|by_status| by_status.iter())
        .filter(|(status, _)| **status != 200)
        .map(|(_, n)| n)
        .sum();
    assert!(failures > 0, "faults were injected and retried: {counters:?}");
}

#[tokio::test]
async fn a_slow_server_times_out_and_is_retried() {
    let oss = TestOss::start(&["slow"]).await;
    oss.emulator.state().set_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    let client = OssClient::new(ClientConfig {
        request_timeout: Duration::from_millis(150),
        retry: fast_retries(2),
        ..oss.config()
    })
    .unwrap();
    let err = client
        .get_encryption(&oss.target("slow"), &oss.credentials)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, OssErrorKind::Timeout(_)), "{err}");
    assert_eq!(err.attempts, 2);
    assert_eq!(err.classification(), Classification::Retryable);
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_connection_error() {
    let oss = TestOss::start(&[]).await;
    let dead = Endpoint::parse(&oss.emulator.url()).unwrap();
    let config = oss.config();
    let addr = oss.emulator.addr();
    oss.emulator.stop().await;
    let client = OssClient::new(ClientConfig {
        retry: fast_retries(2),
        ..config
    })
    .unwrap();
    let target = BucketTarget::new("gone", REGION).unwrap().with_endpoint(dead);
    let err = client
        .get_encryption(&target, &oss.credentials)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, OssErrorKind::Connection(_)), "{err} ({addr})");
    assert_eq!(err.classification(), Classification::Retryable);
}

#[tokio::test]
async fn endpoints_outside_the_allow_list_get_no_request() {
    let oss = TestOss::start(&["fenced"]).await;
    let client = OssClient::new(ClientConfig {
        allow_list: Default::default(),
        ..oss.config()
    })
    .unwrap();
    let err = client
        .get_encryption(&oss.target("fenced"), &oss.credentials)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, OssErrorKind::Endpoint(_)), "{err}");
    assert!(err.to_string().contains("not allowed"), "{err}");
    assert!(oss.emulator.state().counters().is_empty());
}

#[tokio::test]
async fn virtual_hosted_addressing_reaches_the_bucket_by_host_name() {
    let oss = TestOss::start(&["vhost-bucket"]).await;
    let port = oss.emulator.addr().port();
    let mut config = oss.config();
    config.allow_list.allow("oss-cn-hangzhou.aliyuncs.com");
    config.resolve.push((
        "vhost-bucket.oss-cn-hangzhou.aliyuncs.com".into(),
        oss.emulator.addr(),
    ));
    let client = OssClient::new(config).unwrap();
    let endpoint = Endpoint::parse(&format!("http://oss-cn-hangzhou.aliyuncs.com:{port}")).unwrap();
    assert!(!endpoint.is_path_style());
    let target = BucketTarget::new("vhost-bucket", REGION)
        .unwrap()
        .with_endpoint(endpoint);
    let rule = EncryptionRule::kms(Some("k-1"), None);
    put_and_read_back(&client, &target, &oss.credentials, &rule).await;
}

#[tokio::test]
async fn the_limiter_holds_the_configured_qps() {
    let oss = TestOss::start(&["paced"]).await;
    let qps = 25.0;
    let client = OssClient::new(ClientConfig {
        qps,
        burst: 1,
        ..oss.config()
    })
    .unwrap();
    let target = oss.target("paced");
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (client, target, credentials) = (client.clone(), target.clone(), oss.credentials.clone());
            tokio::spawn(async move { client.get_encryption(&target, &credentials).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let arrivals = oss.emulator.state().arrivals();
    assert_eq!(arrivals.len(), 50);
    let span = (*arrivals.last().unwrap() - arrivals[0]).as_secs_f64();
    let observed = (arrivals.len() - 1) as f64 / span;
    let ratio = observed / qps;
    println!("limiter: configured {qps} QPS, observed {observed:.2} QPS (ratio {ratio:.3})");
    assert!(
        ratio <= 1.05,
        "the limiter let through {observed:.2} QPS for {qps}"
    );
    assert!(
        ratio >= 0.5,
        "the limiter is far too slow: {observed:.2} QPS for {qps}"
    );
}

#[tokio::test]
async fn emulator_persistence_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oss.json");
    let config = EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: vec![("durable".into(), REGION.into())],
        persist_path: Some(path.clone()),
        ..EmulatorConfig::default()
    };
    let rule = EncryptionRule::kms(Some("cmk-1"), Some(DataEncryption::Sm4));
    {
        let oss = TestOss::start_with(config.clone()).await;
        oss.client()
            .put_encryption(&oss.target("durable"), &oss.credentials, &rule)
            .await
            .unwrap();
        oss.emulator.stop().await;
    }
    let oss = TestOss::start_with(EmulatorConfig {
        buckets: Vec::new(),
        ..config
    })
    .await;
    let got = oss
        .client()
        .get_encryption(&oss.target("durable"), &oss.credentials)
        .await
        .unwrap();
    assert_eq!(got.value, Some(rule));
}

#[tokio::test]
async fn clock_offsets_are_learnt_per_endpoint() {
    let skewed = TestOss::start(&["skewed"]).await;
    skewed
        .emulator
        .state()
        .set_clock_offset(SignedDuration::from_mins(30));
    let honest = TestOss::start(&["honest"]).await;
    let mut config = skewed.config();
    config.allow_list.allow(honest.emulator.endpoint().authority());
    let client = OssClient::new(config).unwrap();
    let first = client
        .get_encryption(&skewed.target("skewed"), &skewed.credentials)
        .await
        .unwrap();
    assert_eq!(first.attempts, 2, "corrected for the skewed endpoint");
    let other = client
        .get_encryption(&honest.target("honest"), &honest.credentials)
        .await
        .unwrap();
    assert_eq!(
        other.attempts, 1,
        "the skewed endpoint's offset is not applied to another"
    );
    assert_eq!(
        honest.emulator.state().counters()["GetBucketEncryption"].get(&403),
        None
    );
}

#[tokio::test]
async fn an_offset_beyond_the_bound_is_a_skew_error_naming_the_endpoint_and_the_offset() {
    let oss = TestOss::start(&["far-future"]).await;
    oss.emulator
        .state()
        .set_clock_offset(SignedDuration::from_hours(24 * 10));
    let client = oss.client();
    let error = client
        .get_encryption(&oss.target("far-future"), &oss.credentials)
        .await
        .expect_err("a server clock 10 days off is not followed");
    let text = error.to_string();
    assert!(
        text.contains(&oss.emulator.endpoint().authority().to_string()),
        "{text}"
    );
    assert!(text.contains("240h"), "{text}");
    // Still the OSS answer underneath (status, code, request id), and retryable.
    assert_eq!(
        (error.status(), error.code()),
        (Some(403), Some("RequestTimeTooSkewed"))
    );
    assert!(error.request_id().is_some());
    assert_eq!(error.classification(), Classification::Retryable);
}
