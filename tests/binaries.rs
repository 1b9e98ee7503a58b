//! The shipped binaries, run as a user would: the quickstart demo and the standalone emulator.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use oss_encryption_operator::oss::{Credentials, CredentialsProvider, EncryptionRule, SseAlgorithm};
use support::Child;
use support::oss::REGION;

#[test]
fn demo_round_trips_every_rule_against_the_embedded_emulator() {
    let output = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
        .arg("demo")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "PutBucketEncryption      V4   AES256",
        "GetBucketEncryption      V1   KMS (OSS-managed key)",
        "KMS (key 9468da86-3509-4f8d-a61e-6eab1eac0000, data SM4)",
        "GetBucketEncryption      V1   SM4",
        "DeleteBucketEncryption   V4   None",
        "Every rule read back as written",
        "PutBucketEncryption      200x4",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
        .arg("version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("oss-encryption-operator {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn the_standalone_emulator_serves_the_client() {
    oss_encryption_operator::install_tls_provider();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_oss-emulator"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--access-key",
                "LTAI5tStandalone:standalone-secret",
                "--bucket",
                "standalone-bucket",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("oss-emulator starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if http.get(format!("{url}/_emulator/health")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the emulator never answered on {url}");

    let mut config = oss_encryption_operator::oss::ClientConfig::default();
    config.allow_list.allow(format!("127.0.0.1:{port}"));
    let client = oss_encryption_operator::oss::OssClient::new(config).unwrap();
    let target = oss_encryption_operator::oss::BucketTarget::new("standalone-bucket", REGION)
        .unwrap()
        .with_endpoint(oss_encryption_operator::oss::Endpoint::parse(&url).unwrap());
    let credentials: CredentialsProvider = Credentials::new("LTAI5tStandalone", "standalone-secret").into();
    let rule = EncryptionRule::new(SseAlgorithm::Aes256);
    client.put_encryption(&target, &credentials, &rule).await.unwrap();
    assert_eq!(
        client.get_encryption(&target, &credentials).await.unwrap().value,
        Some(rule)
    );
}

#[test]
fn the_standalone_emulator_refuses_bad_flags_clearly() {
    let output = Command::new(env!("CARGO_BIN_EXE_oss-emulator"))
        .args(["--listen", "127.0.0.1:0", "--access-key", "no-colon"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ID:SECRET"));
    let output = Command::new(env!("CARGO_BIN_EXE_oss-emulator"))
        .args(["--listen", "127.0.0.1:0", "--bucket", "Bad_Bucket"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid bucket name"));
}

#[tokio::test]
async fn run_reconciles_through_a_kubeconfig_and_stops_on_sigterm() {
    use support::operator::{Harness, condition};
    // The harness's own in-process controller is stopped: the binary does the work here.
    let mut h = Harness::start(&["from-binary"]).await;
    h.stop_controller().await;
    let mut operator = h.spawn_operator_binary(
        "{}",
        &[
            format!(
                "--allowed-endpoint-suffixes={}",
                h.oss.emulator.endpoint().authority()
            ),
            "--allow-operator-credentials=false".into(),
            "--resync-interval=30s".into(),
        ],
        |_| {},
    );
    h.create(
        "from-binary",
        "from-binary",
        serde_json::json!({"algorithm": "SM4"}),
    )
    .await;
    // Applied now; InSync is confirmed at the next resync (30 s here).
    let object = h.wait_ready("from-binary", "True", "Applied").await;
    assert_eq!(condition(&object, "Synced").unwrap().0, "True");
    assert_eq!(h.oss_rule("from-binary").unwrap().0, "SM4");

    let terminated = Command::new("kill")
        .args(["-TERM", &operator.process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = operator.process.0.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = exited.expect("the operator stops within 10 s of SIGTERM");
    assert!(status.success(), "graceful shutdown exits 0: {status}");
}

/// As `deploy/demo` runs it in a cluster: the operator's own credentials from the environment
/// (no Secret on the resources), the KMS pre-flight sent to the emulator (`--kms-endpoint`),
/// leader election in the pod's namespace, and each resource's endpoint a single-label host
/// name (path-style, as the demo's `oss-emulator.<namespace>.svc` Service name is).
#[tokio::test]
async fn run_works_as_the_in_cluster_demo_configures_it() {
    use oss_encryption_operator::emulator::KmsKey;
    use support::operator::Harness;
    let mut h = Harness::start(&["demo-aes", "demo-kms"]).await;
    h.stop_controller().await;
    h.oss.emulator.state().put_kms_key(
        "key-demo",
        KmsKey {
            region: REGION.into(),
            ..KmsKey::default()
        },
    );
    let port = h.oss.emulator.endpoint().port().unwrap();
    let by_name = format!("localhost:{port}");
    let _operator = h.spawn_operator_binary(
        "{}",
        &[
            "--leader-election".into(),
            format!("--allowed-endpoint-suffixes={by_name}"),
            format!("--kms-endpoint=http://{by_name}"),
        ],
        |command| {
            command
                .env("POD_NAMESPACE", support::operator::NAMESPACE)
                .env("ALIBABA_CLOUD_ACCESS_KEY_ID", support::oss::ACCESS_KEY_ID)
                .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", support::oss::ACCESS_KEY_SECRET);
        },
    );
    let endpoint = format!("http://{by_name}");
    let demo = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({"endpoint": endpoint, "credentials": null});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    h.create(
        "demo-aes",
        "demo-aes",
        demo(serde_json::json!({"algorithm": "AES256"})),
    )
    .await;
    h.create(
        "demo-kms",
        "demo-kms",
        demo(serde_json::json!({"algorithm": "KMS", "kmsMasterKeyId": "key-demo"})),
    )
    .await;
    h.wait_ready("demo-aes", "True", "Applied").await;
    h.wait_ready("demo-kms", "True", "Applied").await;
    assert_eq!(h.oss_rule("demo-aes").unwrap().0, "AES256");
    assert_eq!(
        h.oss_rule("demo-kms").unwrap(),
        ("KMS".into(), "key-demo".into(), String::new())
    );
}

#[test]
fn run_refuses_bad_flags_clearly() {
    let output = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
        .args(["run", "--resync-interval", "5s"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 30s"));
}
