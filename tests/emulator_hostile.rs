//! The emulator as a server facing hostile or broken input: bad state files and paths, floods
//! of unauthenticated requests, half-open connections, bad bucket names and huge bodies.

mod support;

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oss_encryption_operator::emulator::{Emulator, EmulatorConfig};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

/// A plain HTTP client (reqwest is built without a default TLS provider).
fn http() -> reqwest::Client {
    oss_encryption_operator::install_tls_provider();
    reqwest::Client::new()
}

fn emulator_binary(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oss-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            return (-1, String::from_utf8_lossy(&output.stdout).into_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unusable_state_path_refuses_to_start_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_a_file = file.join("state.json");
    let binary = dir.path().join("binary.json");
    std::fs::write(&binary, [0u8, 159, 146, 150, 255, 0, 1]).unwrap();
    let invalid = dir.path().join("invalid.json");
    std::fs::write(
        &invalid,
        r#"{"buckets": {"BAD_NAME!": {"region": "cn-hangzhou", "rule": {"algorithm": "DES"}}}}"#,
    )
    .unwrap();
    let bad_rule = dir.path().join("bad-rule.json");
    std::fs::write(
        &bad_rule,
        r#"{"buckets": {"good-name": {"region": "cn-hangzhou", "rule": {"algorithm": "DES"}}}}"#,
    )
    .unwrap();
    for (path, expect) in [
        (under_a_file.clone(), "state.json"),
        (dir.path().to_owned(), dir.path().to_str().unwrap()),
        (binary, "binary.json"),
        (invalid, "BAD_NAME!"),
        (bad_rule, "DES"),
    ] {
        let (code, stderr) = emulator_binary(&["--state", path.to_str().unwrap()]);
        assert_ne!(code, -1, "{}: started anyway", path.display());
        assert_ne!(code, 0, "{}: {stderr}", path.display());
        assert!(
            stderr.contains(expect) && stderr.contains(path.file_name().unwrap().to_str().unwrap()),
            "{}: {stderr}",
            path.display()
        );
    }
}

#[tokio::test]
async fn a_write_that_cannot_be_persisted_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let oss = TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: vec![("persisted".into(), REGION.into())],
        persist_path: Some(state_dir.join("state.json")),
        ..EmulatorConfig::default()
    })
    .await;
    // The directory goes away under the running emulator (a full disk would do the same).
    std::fs::remove_dir_all(&state_dir).unwrap();
    std::fs::write(&state_dir, "now a file").unwrap();
    let rule =
        oss_encryption_operator::oss::EncryptionRule::new(oss_encryption_operator::oss::SseAlgorithm::Aes256);
    let error = oss
        .client()
        .put_encryption(&oss.target("persisted"), &oss.credentials, &rule)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(500), "{error}");
    assert_eq!(
        oss.emulator.state().bucket("persisted").unwrap().rule,
        None,
        "not acknowledged"
    );
}

#[tokio::test]
async fn unauthenticated_floods_leave_no_state_behind() {
    let oss = TestOss::start(&["known"]).await;
    let http = http();
    for i in 0..300 {
        let response = http
            .get(format!("{}/random-bucket-{i}/?encryption", oss.emulator.url()))
            .header("Authorization", "OSS LTAI5tNobody:c2lnbmF0dXJl")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
    }
    let counted = oss.emulator.state().bucket_requests();
    assert!(
        counted.keys().all(|b| b == "known"),
        "per-bucket counters only for known buckets: {} entries",
        counted.len()
    );
    for i in 0..50 {
        let response = http
            .post(format!(
                "{}/?Action=AssumeRoleWithOIDC&Format=JSON&Version=2015-04-01",
                oss.emulator.url()
            ))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("RoleArn=acs%3Aram%3A%3A1%3Arole%2Fr&OIDCProviderArn=acs%3Aram%3A%3A1%3Aoidc-provider%2Fp&OIDCToken=rejected-{i}&RoleSessionName=s"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "an invalid token is refused");
    }
    assert!(
        oss.emulator.state().oidc_tokens_seen().is_empty(),
        "rejected tokens are not kept"
    );
}

#[tokio::test]
async fn half_open_connections_are_closed() {
    let emulator = Emulator::start(EmulatorConfig {
        header_read_timeout: Duration::from_millis(300),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let addr = emulator.addr();
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /bucket/?encryption HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buffer = Vec::new();
        stream.read_to_end(&mut buffer).map(|_| buffer.len())
    })
    .await
    .unwrap();
    assert!(outcome.is_ok(), "the server closed the connection: {outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn invalid_bucket_names_are_invalid_bucket_name() {
    let oss = TestOss::start(&[]).await;
    let http = http();
    for name in ["BAD_NAME", "ab", "-leading", "a..b"] {
        let response = http
            .get(format!("{}/{name}/?encryption", oss.emulator.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{name}");
        let body = response.text().await.unwrap();
        assert!(body.contains("<Code>InvalidBucketName</Code>"), "{name}: {body}");
    }
}

#[tokio::test]
async fn huge_bodies_are_refused_early_with_a_request_id_and_counted() {
    let oss = TestOss::start(&["big"]).await;
    let response = http()
        .put(format!("{}/big/?encryption", oss.emulator.url()))
        .body(vec![b'x'; 8 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-oss-request-id"].to_str().unwrap().len(), 24);
    assert!(response.text().await.unwrap().contains("EntityTooLarge"));
    assert_eq!(oss.emulator.state().counters()["PutBucketEncryption"][&400], 1);
}

/// A client that sends a PutBucketEncryption head promising `length` bytes, then one byte every
/// 50 ms and never the rest; it returns what the server answered (empty when it only closed).
async fn trickle(addr: std::net::SocketAddr, bucket: &str, length: usize, prefix: usize) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head =
        format!("PUT /{bucket}/?encryption HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {length}\r\n\r\n");
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.write_all(&vec![b' '; prefix]).await.unwrap();
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    // The dripping ends with this client (also when its task is aborted).
    let _dripping = AbortOnDrop(tokio::spawn(async move {
        for _ in prefix..length.saturating_sub(1) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
        // Hold the connection open without finishing the body.
        std::future::pending::<()>().await;
    }));
    // Read until the server closes (or resets: what came before stays read).
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut chunk).await {
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "a body that never ends is never answered");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_bodies_time_out_are_counted_and_normal_requests_are_still_answered() {
    let oss = TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: vec![("slow".into(), REGION.into()), ("fast".into(), REGION.into())],
        body_read_timeout: Duration::from_millis(1500),
        ..EmulatorConfig::default()
    })
    .await;
    let addr = oss.emulator.addr();
    let slow = 100;
    let clients: Vec<_> = (0..slow)
        .map(|_| tokio::spawn(trickle(addr, "slow", 2000, 10)))
        .collect();
    // Every slow client is being read before the normal request is sent.
    let started = Instant::now();
    while oss.emulator.bodies_reading() < slow {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "slow clients connect"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rule =
        oss_encryption_operator::oss::EncryptionRule::new(oss_encryption_operator::oss::SseAlgorithm::Aes256);
    oss.client()
        .put_encryption(&oss.target("fast"), &oss.credentials, &rule)
        .await
        .expect("a normal request is answered while slow clients hold connections");
    assert!(
        oss.emulator.bodies_reading() >= slow,
        "the slow clients are still there"
    );
    for client in clients {
        let answer = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("<Code>RequestTimeout</Code>"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    let counters = oss.emulator.state().counters();
    assert_eq!(counters["PutBucketEncryption"][&400], slow as u64, "{counters:?}");
    assert_eq!(counters["PutBucketEncryption"][&200], 1, "{counters:?}");
    assert_eq!(oss.emulator.state().bucket("slow").unwrap().rule, None);
    assert_eq!(
        oss.emulator.bodies_reading(),
        0,
        "nothing is held after they are answered"
    );
}

#[tokio::test]
async fn bodies_share_a_budget_and_small_ones_are_read_when_it_is_used_up() {
    let oss = TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: vec![("slow".into(), REGION.into()), ("fast".into(), REGION.into())],
        body_budget: 64 * 1024,
        ..EmulatorConfig::default()
    })
    .await;
    let addr = oss.emulator.addr();
    // Each holds 20 KiB beyond the free bytes: three fit in 64 KiB, the fourth does not.
    let free = oss_encryption_operator::emulator::BODY_FREE_BYTES;
    let holders: Vec<_> = (0..3)
        .map(|_| tokio::spawn(trickle(addr, "slow", 60_000, free + 20 * 1024)))
        .collect();
    let started = Instant::now();
    while oss.emulator.body_budget_in_use() < 3 * 20 * 1024 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "holders send their bytes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = trickle(addr, "slow", 60_000, free + 20 * 1024).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("<Code>ServiceUnavailable</Code>"), "{refused}");
    let rule =
        oss_encryption_operator::oss::EncryptionRule::new(oss_encryption_operator::oss::SseAlgorithm::Sm4);
    oss.client()
        .put_encryption(&oss.target("fast"), &oss.credentials, &rule)
        .await
        .expect("a small body needs no budget");
    for holder in holders {
        holder.abort();
    }
    let started = Instant::now();
    while oss.emulator.body_budget_in_use() > 0 || oss.emulator.bodies_reading() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the budget comes back when they leave"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_put_appends_to_the_journal_instead_of_rewriting_the_state_file() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let config = EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: (0..1000)
            .map(|i| (format!("bucket-{i:04}"), REGION.to_owned()))
            .collect(),
        persist_path: Some(path.clone()),
        ..EmulatorConfig::default()
    };
    let oss = TestOss::start_with(config.clone()).await;
    let before = std::fs::metadata(&path).unwrap();
    let rule = oss_encryption_operator::oss::EncryptionRule::kms(Some("cmk-7"), None);
    oss.client()
        .put_encryption(&oss.target("bucket-0007"), &oss.credentials, &rule)
        .await
        .unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (before.ino(), before.len(), before.mtime_nsec()),
        (after.ino(), after.len(), after.mtime_nsec()),
        "one PUT rewrote the whole state file of 1,000 buckets"
    );
    oss.emulator.stop().await;
    let oss = TestOss::start_with(EmulatorConfig {
        buckets: Vec::new(),
        ..config
    })
    .await;
    let got = oss
        .client()
        .get_encryption(&oss.target("bucket-0007"), &oss.credentials)
        .await
        .unwrap();
    assert_eq!(got.value, Some(rule), "the acknowledged write is read back");
}

/// Starts the emulator binary with a state file; returns it and its URL.
fn emulator_with_state(path: &std::path::Path, buckets: usize) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_oss-emulator"));
    command
        .args(["--listen", "127.0.0.1:0", "--state", path.to_str().unwrap()])
        .args(["--access-key", &format!("{ACCESS_KEY_ID}:{ACCESS_KEY_SECRET}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for i in 0..buckets {
        command.args(["--bucket", &format!("bucket-{i:04}")]);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://"), "{line}");
    (child, url)
}

#[tokio::test]
async fn kill_9_never_loses_an_acknowledged_write() {
    use oss_encryption_operator::oss::{
        BucketTarget, ClientConfig, Credentials, CredentialsProvider, EncryptionRule, Endpoint, OssClient,
    };
    let client_for = |endpoint: &Endpoint| {
        let mut config = ClientConfig {
            retry: support::oss::fast_retries(1),
            qps: 100_000.0,
            burst: 100_000,
            ..ClientConfig::default()
        };
        config.allow_list.allow(endpoint.authority());
        std::sync::Arc::new(OssClient::new(config).unwrap())
    };
    let credentials: CredentialsProvider = Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET).into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let buckets = 400;
    for round in 0..3 {
        let (mut child, url) = emulator_with_state(&path, if round == 0 { buckets } else { 0 });
        let endpoint = Endpoint::parse(&url).unwrap();
        let client = client_for(&endpoint);
        let rule = move |i: usize| EncryptionRule::kms(Some(&format!("round-{round}-key-{i}")), None);
        let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (enough, mut enough_rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..32 {
            let (client, credentials, endpoint, acknowledged, enough) = (
                client.clone(),
                credentials.clone(),
                endpoint.clone(),
                acknowledged.clone(),
                enough.clone(),
            );
            writers.spawn(async move {
                for i in (writer..buckets).step_by(32) {
                    let target = BucketTarget::new(&format!("bucket-{i:04}"), REGION)
                        .unwrap()
                        .with_endpoint(endpoint.clone());
                    if client
                        .put_encryption(&target, &credentials, &rule(i))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let mut acked = acknowledged.lock().unwrap();
                    acked.push(i);
                    if acked.len() == buckets / 2 {
                        let _ = enough.try_send(());
                    }
                }
            });
        }
        // Killed in the middle of the writes.
        enough_rx.recv().await.unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        while writers.join_next().await.is_some() {}
        let acked = acknowledged.lock().unwrap().clone();
        assert!(
            acked.len() >= buckets / 2 && acked.len() < buckets,
            "{}",
            acked.len()
        );

        let (mut child, url) = emulator_with_state(&path, 0);
        let endpoint = Endpoint::parse(&url).unwrap();
        let client = client_for(&endpoint);
        for i in acked {
            let target = BucketTarget::new(&format!("bucket-{i:04}"), REGION)
                .unwrap()
                .with_endpoint(endpoint.clone());
            let got = client.get_encryption(&target, &credentials).await;
            assert_eq!(
                got.map(|g| g.value).ok().flatten(),
                Some(rule(i)),
                "round {round}: acknowledged write to bucket-{i:04} lost"
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[tokio::test]
async fn slow_admin_bodies_time_out_too() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let oss = TestOss::start_with(EmulatorConfig {
        body_read_timeout: Duration::from_millis(300),
        ..EmulatorConfig::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(oss.emulator.addr()).await.unwrap();
    stream
        .write_all(b"PUT /_emulator/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a slow admin body is never answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(oss.emulator.bodies_reading(), 0);
}
