//! RRSA end to end: the OIDC token file is exchanged at (emulated) STS for temporary credentials,
//! which OSS (the emulator) then verifies with their security token.

mod support;

use std::path::Path;
use std::time::Duration;

use oss_encryption_operator::emulator::{EmulatorConfig, Faults};
use oss_encryption_operator::oss::{
    Classification, CredentialsError, CredentialsProvider, OssErrorKind, SignatureVersion,
};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

const TOKEN_1: &str = "eyJhbGciOiJSUzI1NiJ9.first-token.sig";
const TOKEN_2: &str = "eyJhbGciOiJSUzI1NiJ9.second-token.sig";

async fn emulator() -> TestOss {
    TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: vec![("rrsa-bucket".into(), REGION.into())],
        oidc_tokens: vec![TOKEN_1.into(), TOKEN_2.into()],
        ..EmulatorConfig::default()
    })
    .await
}

/// The operator's credential chain as the ACK webhook's variables would configure it.
fn rrsa_provider(oss: &TestOss, token_file: &Path) -> CredentialsProvider {
    let vars = [
        (
            "ALIBABA_CLOUD_ROLE_ARN",
            "acs:ram::1234567890:role/oss-encryption-operator".to_owned(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1234567890:oidc-provider/ack-rrsa-c1".to_owned(),
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token_file.display().to_string()),
        ("ALIBABA_CLOUD_STS_ENDPOINT", oss.emulator.url()),
    ];
    let lookup = move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    let provider = CredentialsProvider::from_env_lookup(lookup, &oss.client()).unwrap();
    assert!(matches!(provider, CredentialsProvider::Rrsa(_)));
    provider
}

fn token_file(dir: &tempfile::TempDir, token: &str) -> std::path::PathBuf {
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

#[tokio::test]
async fn rrsa_credentials_sign_oss_requests_with_v4_and_v1() {
    let oss = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = rrsa_provider(&oss, &token_file(&dir, TOKEN_1));
    let client = oss.client();
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let target = oss.target("rrsa-bucket").with_signature_version(version);
        let reply = client.get_encryption(&target, &provider).await.unwrap();
        assert_eq!(reply.value, None);
    }
    let credentials = provider.credentials().await.unwrap();
    assert!(credentials.access_key_id().starts_with("STS."));
    assert!(credentials.security_token().is_some());
    assert!(credentials.expiration().is_some());
    assert_eq!(
        oss.emulator.state().total("AssumeRoleWithOIDC"),
        1,
        "one exchange, then the cache"
    );
    assert_eq!(oss.emulator.state().oidc_tokens_seen(), vec![TOKEN_1.to_owned()]);
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let oss = emulator().await;
    oss.emulator.state().set_faults(Faults {
        latency_ms: 200,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let provider = rrsa_provider(&oss, &token_file(&dir, TOKEN_1));
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.credentials().await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for caller in callers {
        ids.push(caller.await.unwrap().access_key_id().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller got the same credentials");
    assert_eq!(oss.emulator.state().total("AssumeRoleWithOIDC"), 1);
}

/// Waits (generously) until STS has answered `count` exchanges.
async fn wait_for_sts_answers(oss: &TestOss, count: u64) {
    for _ in 0..600 {
        if oss.emulator.state().total("AssumeRoleWithOIDC") >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("STS never answered {count} exchanges");
}

/// Asks until the provider hands out credentials other than `old` (a background refresh landed).
async fn wait_for_new_credentials(provider: &CredentialsProvider, old: &str) -> String {
    for _ in 0..600 {
        let id = provider.credentials().await.unwrap().access_key_id().to_owned();
        if id != old {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the credentials were never refreshed");
}

#[tokio::test]
async fn credentials_near_expiry_are_refreshed_and_the_token_file_is_re_read() {
    let oss = emulator().await;
    // STS hands out credentials that expire inside the refresh margin, so every call refreshes.
    oss.emulator
        .state()
        .set_sts_duration_override(Some(Duration::from_secs(120)));
    let dir = tempfile::tempdir().unwrap();
    let path = token_file(&dir, TOKEN_1);
    let provider = rrsa_provider(&oss, &path);
    let first = provider.credentials().await.unwrap();
    std::fs::write(&path, TOKEN_2).unwrap(); // the kubelet rotates the projected token
    let second = wait_for_new_credentials(&provider, first.access_key_id()).await;
    assert_ne!(first.access_key_id(), second);
    assert_eq!(
        oss.emulator.state().oidc_tokens_seen(),
        vec![TOKEN_1.to_owned(), TOKEN_2.to_owned()]
    );

    // Long-lived ones are cached.
    oss.emulator.state().set_sts_duration_override(None);
    let third = wait_for_new_credentials(&provider, &second).await;
    wait_for_sts_answers(&oss, 3).await;
    let fourth = provider.credentials().await.unwrap();
    let fifth = provider.credentials().await.unwrap();
    assert_eq!(fourth.access_key_id(), fifth.access_key_id());
    assert_eq!(third, fourth.access_key_id());
    assert_eq!(oss.emulator.state().total("AssumeRoleWithOIDC"), 3);
}

#[tokio::test]
async fn a_slow_sts_never_holds_up_callers_whose_credentials_are_still_valid() {
    let oss = emulator().await;
    // Valid for two minutes: inside the refresh margin, outside the expiry margin.
    oss.emulator
        .state()
        .set_sts_duration_override(Some(Duration::from_secs(120)));
    let dir = tempfile::tempdir().unwrap();
    let provider = rrsa_provider(&oss, &token_file(&dir, TOKEN_1));
    let first = provider.credentials().await.unwrap();
    oss.emulator.state().set_faults(Faults {
        latency_ms: 5_000,
        ..Faults::default()
    });
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.credentials().await.unwrap() })
        })
        .collect();
    for caller in callers {
        assert_eq!(
            caller.await.unwrap().access_key_id(),
            first.access_key_id(),
            "the still-valid credentials, without waiting for STS"
        );
    }
    assert_eq!(
        oss.emulator.state().total("AssumeRoleWithOIDC"),
        1,
        "the refresh is still under way when every caller has its answer"
    );
    wait_for_sts_answers(&oss, 2).await;
    oss.emulator.state().set_faults(Faults::default());
    wait_for_new_credentials(&provider, first.access_key_id()).await;
    assert!(
        oss.emulator.state().total("AssumeRoleWithOIDC") <= 3,
        "one refresh at a time: {:?}",
        oss.emulator.state().counters()
    );
}

#[tokio::test]
async fn a_failing_sts_is_asked_once_while_the_old_credentials_still_work() {
    let oss = emulator().await;
    oss.emulator
        .state()
        .set_sts_duration_override(Some(Duration::from_secs(120)));
    let dir = tempfile::tempdir().unwrap();
    let path = token_file(&dir, TOKEN_1);
    let provider = rrsa_provider(&oss, &path);
    let first = provider.credentials().await.unwrap();
    std::fs::write(&path, "eyJ.not-accepted.sig").unwrap(); // every refresh now fails
    let client = oss.client();
    let target = oss.target("rrsa-bucket");
    for _ in 0..20 {
        assert_eq!(
            provider.credentials().await.unwrap().access_key_id(),
            first.access_key_id()
        );
        client.get_encryption(&target, &provider).await.unwrap();
    }
    wait_for_sts_answers(&oss, 2).await;
    for _ in 0..20 {
        client.get_encryption(&target, &provider).await.unwrap();
    }
    assert_eq!(
        oss.emulator.state().total("AssumeRoleWithOIDC"),
        2,
        "one exchange, one failed refresh, then the failure is remembered"
    );
    assert_eq!(oss.emulator.state().total("GetBucketEncryption"), 40);
}

#[tokio::test]
async fn a_rejected_token_is_a_terminal_sts_error_without_the_token() {
    let oss = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = rrsa_provider(&oss, &token_file(&dir, "eyJ.not-accepted.sig"));
    let err = provider.credentials().await.unwrap_err();
    match &err {
        CredentialsError::Sts {
            status,
            code,
            request_id,
            ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(code, "AuthenticationFail.OIDCToken.Invalid");
            assert!(!request_id.is_empty());
        }
        other => panic!("expected an STS error, got {other:?}"),
    }
    assert!(
        !err.to_string().contains("not-accepted"),
        "the token never appears: {err}"
    );
    let oss_err = oss
        .client()
        .get_encryption(&oss.target("rrsa-bucket"), &provider)
        .await
        .unwrap_err();
    assert!(matches!(oss_err.kind, OssErrorKind::Credentials(_)));
    assert_eq!(oss_err.classification(), Classification::Terminal);
    assert_eq!(
        oss.emulator.state().total("GetBucketEncryption"),
        0,
        "nothing sent to OSS"
    );
}

#[tokio::test]
async fn a_missing_token_file_names_the_path() {
    let oss = emulator().await;
    let provider = rrsa_provider(&oss, Path::new("/nonexistent/rrsa/token"));
    let err = provider.credentials().await.unwrap_err();
    assert!(matches!(err, CredentialsError::TokenFile { .. }));
    assert!(err.to_string().contains("/nonexistent/rrsa/token"), "{err}");
}

#[tokio::test]
async fn oss_refuses_expired_and_mismatched_sts_tokens() {
    let oss = emulator().await;
    oss.emulator
        .state()
        .set_sts_duration_override(Some(Duration::from_secs(1)));
    let dir = tempfile::tempdir().unwrap();
    let provider = rrsa_provider(&oss, &token_file(&dir, TOKEN_1));
    let issued = provider.credentials().await.unwrap();
    let client = oss.client();
    let target = oss.target("rrsa-bucket");

    let mismatched: CredentialsProvider =
        oss_encryption_operator::oss::Credentials::new(issued.access_key_id(), issued.access_key_secret())
            .with_security_token("CAIS-some-other-token")
            .into();
    let err = client.get_encryption(&target, &mismatched).await.unwrap_err();
    assert_eq!(err.code(), Some("AccessKeyIdAndSecurityTokenNotMatch"));

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let expired: CredentialsProvider = issued.into();
    let err = client.get_encryption(&target, &expired).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(403), Some("InvalidSecurityToken"))
    );
    assert!(err.service().unwrap().message.contains("expired"), "{err}");
}
