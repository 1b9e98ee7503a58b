//! Hostile transport: an allowed endpoint that redirects, answers without end, or an STS endpoint
//! outside the allow-list. Nothing is followed, nothing unbounded is read, no token leaves.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use oss_encryption_operator::oss::{
    BucketTarget, ClientConfig, Credentials, CredentialsProvider, Endpoint, OssClient,
};
use support::oss::fast_retries;

/// A loopback server answering every request with `answer`, counting requests.
async fn server(
    answer: impl Fn() -> Response<Body> + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let answer = answer.clone();
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            answer()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (authority, hits)
}

/// A loopback server answering every request with a redirect of `status` to `location`.
async fn redirecting(status: StatusCode, location: String) -> String {
    let (authority, _) = server(move || {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("location", HeaderValue::from_str(&location).unwrap());
        response
    })
    .await;
    authority
}

fn client_allowing(authorities: &[&str]) -> OssClient {
    oss_encryption_operator::install_tls_provider();
    let mut config = ClientConfig {
        retry: fast_retries(3),
        ..ClientConfig::default()
    };
    for authority in authorities {
        config.allow_list.allow(authority);
    }
    OssClient::new(config).unwrap()
}

fn target(authority: &str) -> BucketTarget {
    BucketTarget::new("redirected", "cn-hangzhou")
        .unwrap()
        .with_endpoint(Endpoint::parse(&format!("http://{authority}")).unwrap())
}

fn credentials() -> CredentialsProvider {
    Credentials::new("LTAI5tRedirectTest", "secret-value")
        .with_security_token("sts-token-canary")
        .into()
}

#[tokio::test]
async fn a_redirect_from_an_allowed_endpoint_is_an_error_and_never_followed() {
    let (elsewhere, elsewhere_hits) = server(|| Response::new(Body::from("<x/>"))).await;
    let allowed = redirecting(
        StatusCode::TEMPORARY_REDIRECT,
        format!("http://{elsewhere}/stolen"),
    )
    .await;
    // Even with the other host allowed, a redirect is not followed: OSS never redirects these APIs.
    let client = client_allowing(&[&allowed, &elsewhere]);
    let error = client
        .get_encryption(&target(&allowed), &credentials())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("307") && text.contains(&format!("http://{elsewhere}/stolen")),
        "{text}"
    );
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "nothing reached the other host"
    );
    assert_eq!(
        error.classification(),
        oss_encryption_operator::oss::Classification::Terminal
    );
}

#[tokio::test]
async fn response_bodies_are_capped() {
    // 8 MiB of a 200 and of a 500, streamed without a length.
    for status in [StatusCode::OK, StatusCode::INTERNAL_SERVER_ERROR] {
        let (endless, _) = server(move || {
            let chunks = (0..128).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
            let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
            *response.status_mut() = status;
            response
        })
        .await;
        let client = client_allowing(&[&endless]);
        let error = client
            .get_encryption(&target(&endless), &credentials())
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("larger than"), "{status}: {text}");
        assert!(text.len() < 2000, "the body is not echoed: {} bytes", text.len());
    }
}

#[tokio::test]
async fn sts_endpoints_must_pass_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "oidc-token-canary").unwrap();
    let client = client_allowing(&[".aliyuncs.com"]);
    for endpoint in [
        "http://sts.aliyuncs.com",
        "http://127.0.0.1:9",
        "https://sts.example.com",
        "sts.attacker.example",
    ] {
        let vars = [
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r".to_owned()),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/p".to_owned(),
            ),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.display().to_string()),
            ("ALIBABA_CLOUD_STS_ENDPOINT", endpoint.to_owned()),
        ];
        let lookup = move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let error = CredentialsProvider::from_env_lookup(lookup, &client).unwrap_err();
        assert!(
            error.to_string().contains("STS endpoint") && error.to_string().contains("allow"),
            "{endpoint}: {error}"
        );
    }
}

#[tokio::test]
async fn sts_redirects_are_not_followed() {
    let (elsewhere, elsewhere_hits) = server(|| Response::new(Body::from("{}"))).await;
    let sts = redirecting(StatusCode::FOUND, format!("http://{elsewhere}/")).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "oidc-token-canary").unwrap();
    let client = client_allowing(&[&sts, &elsewhere]);
    let vars = [
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r".to_owned()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1:oidc-provider/p".to_owned(),
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.display().to_string()),
        ("ALIBABA_CLOUD_STS_ENDPOINT", format!("http://{sts}")),
    ];
    let lookup = move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    let provider = CredentialsProvider::from_env_lookup(lookup, &client).unwrap();
    let error = provider.credentials().await.unwrap_err();
    assert!(error.to_string().contains("302"), "{error}");
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "the token went nowhere else"
    );
}
