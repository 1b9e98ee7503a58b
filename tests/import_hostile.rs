//! `import` against an allowed endpoint that is not OSS: a listing whose names and regions hold
//! YAML documents or terminal control characters, a NextMarker that never ends, duplicate
//! names; and an output directory holding a dangling symlink, or a bucket named
//! `kustomization`. The binary through a fake ListBuckets server (a loopback socket).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oss_encryption_operator::emulator::EmulatorConfig;
use oss_encryption_operator::oss::list::{self, BucketPage, BucketSummary, ListRequest};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, TestOss};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the fake server answers to ListBuckets with a given marker.
type Pages = Arc<dyn Fn(&str) -> BucketPage + Send + Sync>;

/// A fake OSS on a loopback port: ListBuckets answers from `pages`, every GetBucketEncryption
/// is 404 `NoSuchServerSideEncryptionRule`. Returns the address and a count of listings.
async fn fake_oss(pages: Pages) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let listings = Arc::new(AtomicUsize::new(0));
    let counter = listings.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let pages = pages.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = if target.contains("encryption") {
                    (
                        "404 Not Found",
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchServerSideEncryptionRule</Code><Message>none</Message><RequestId>5C3D9175B6FC201293AD0001</RequestId></Error>".to_owned(),
                    )
                } else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let marker = target
                        .split(['?', '&'])
                        .find_map(|p| p.strip_prefix("marker="))
                        .unwrap_or("")
                        .to_owned();
                    let page = pages(&marker);
                    ("200 OK", list::to_xml(&page, &ListRequest::default()))
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\nx-oss-request-id: 5C3D9175B6FC201293AD0001\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (address, listings)
}

fn summary(name: &str, region: &str) -> BucketSummary {
    BucketSummary {
        name: name.into(),
        region: region.into(),
        location: format!("oss-{region}"),
        creation_date: "2024-01-01T00:00:00.000Z".into(),
        storage_class: "Standard".into(),
        ..BucketSummary::default()
    }
}

fn one_page(buckets: Vec<BucketSummary>) -> Pages {
    Arc::new(move |_| BucketPage {
        buckets: buckets.clone(),
        owner: "1234".into(),
        ..BucketPage::default()
    })
}

/// Runs the binary's `import` against `address` with a credentials file: (code, stdout, stderr).
async fn import(address: &str, extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.yaml");
    std::fs::write(
        &credentials,
        format!("accessKeyId: {ACCESS_KEY_ID}\naccessKeySecret: {ACCESS_KEY_SECRET}\n"),
    )
    .unwrap();
    let mut args: Vec<String> = vec![
        "import".into(),
        "--endpoint".into(),
        format!("http://{address}"),
        "--allowed-endpoint-suffixes".into(),
        address.into(),
        "--credentials-file".into(),
        credentials.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let _dir = dir;
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
            .args(&args)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

const INJECTED: &str = "\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: injected}\n";

/// The documents in a YAML stream, as `kubectl apply -f -` would split them.
fn kinds(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn hostile_names_and_regions_inject_nothing_and_are_reported() {
    let (address, _) = fake_oss(one_page(vec![
        summary("good-bucket", "cn-hangzhou"),
        summary(&format!("evil{INJECTED}"), "cn-hangzhou"),
        summary("evil-region", &format!("cn-hangzhou{INJECTED}")),
        summary("term\u{1b}]0;pwned\u{7}\r", "cn-hangzhou\u{1b}[2J"),
    ]))
    .await;
    let (code, stdout, stderr) = import(&address, &[]).await;
    assert_eq!(code, 1, "refused buckets fail the run: {stderr}");
    assert_eq!(kinds(&stdout), ["BucketEncryption"], "{stdout}");
    assert!(
        stdout
            .lines()
            .filter(|l| l.contains("injected"))
            .all(|l| l.starts_with("# NOT IMPORTED")),
        "the hostile text stays inside one comment line: {stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "no control characters reach the terminal: {text:?}"
        );
    }
    assert!(stdout.contains("bucket: good-bucket"), "{stdout}");
    assert_eq!(
        stderr.matches("not a valid OSS").count(),
        3,
        "each refused bucket is named: {stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, _, stderr) = import(&address, &["-o", &out.display().to_string()]).await;
    assert_eq!(code, 1, "{stderr}");
    let kustomization = std::fs::read_to_string(out.join("kustomization.yaml")).unwrap();
    assert_eq!(kinds(&kustomization), ["Kustomization"], "{kustomization}");
    assert!(
        kustomization
            .lines()
            .filter(|l| l.contains("---") || l.contains("injected"))
            .all(|l| l.starts_with("# NOT IMPORTED")),
        "{kustomization}"
    );
    assert!(
        !kustomization.chars().any(|c| c.is_control() && c != '\n'),
        "{kustomization:?}"
    );
}

#[tokio::test]
async fn a_next_marker_that_never_ends_is_an_error() {
    // Truncated forever, the marker growing by a letter a page.
    let (address, listings) = fake_oss(Arc::new(|marker: &str| BucketPage {
        is_truncated: true,
        next_marker: if marker.is_empty() {
            "aaa".into()
        } else {
            format!("{marker}a")
        },
        owner: "1234".into(),
        ..BucketPage::default()
    }))
    .await;
    let (code, stdout, stderr) = import(&address, &[]).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("NextMarker"), "{stderr}");
    let pages = listings.load(Ordering::SeqCst);
    println!("pages listed before giving up: {pages}");
    assert!(pages <= 64, "bounded: {pages} pages");

    // A marker that does not advance.
    let (address, listings) = fake_oss(Arc::new(|_: &str| BucketPage {
        buckets: vec![summary("same", "cn-hangzhou")],
        is_truncated: true,
        next_marker: "same".into(),
        owner: "1234".into(),
    }))
    .await;
    let (code, _, stderr) = import(&address, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("NextMarker"), "{stderr}");
    assert!(listings.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn duplicate_names_in_a_listing_import_once_and_are_reported() {
    let (address, _) = fake_oss(one_page(vec![
        summary("twice", "cn-hangzhou"),
        summary("twice", "cn-hangzhou"),
        summary("twice", "cn-shanghai"),
    ]))
    .await;
    let (code, stdout, stderr) = import(&address, &[]).await;
    assert_eq!(kinds(&stdout), ["BucketEncryption"], "{stdout}");
    assert!(stderr.contains("more than once"), "{stderr}");
    assert_eq!(code, 1, "{stderr}");
}

async fn emulator_with(buckets: &[&str]) -> TestOss {
    TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: buckets
            .iter()
            .map(|b| (b.to_string(), "cn-hangzhou".to_owned()))
            .collect(),
        ..EmulatorConfig::default()
    })
    .await
}

#[tokio::test]
async fn a_dangling_symlink_in_the_output_directory_is_never_written_through() {
    let oss = emulator_with(&["victim"]).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let elsewhere = dir.path().join("elsewhere.yaml");
    std::os::unix::fs::symlink(&elsewhere, out.join("victim.yaml")).unwrap();
    let credentials = oss.write_credentials(dir.path());
    let (code, _, stderr) = oss
        .cli(vec![
            "import".into(),
            "-o".into(),
            out.display().to_string(),
            "--credentials-file".into(),
            credentials.display().to_string(),
        ])
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(!elsewhere.exists(), "nothing written through the symlink");
    assert!(stderr.contains("victim.yaml"), "{stderr}");
}

#[tokio::test]
async fn a_bucket_named_kustomization_keeps_its_manifest() {
    let oss = emulator_with(&["kustomization", "other"]).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let credentials = oss.write_credentials(dir.path());
    let (code, _, stderr) = oss
        .cli(vec![
            "import".into(),
            "-o".into(),
            out.display().to_string(),
            "--credentials-file".into(),
            credentials.display().to_string(),
        ])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let kustomization = std::fs::read_to_string(out.join("kustomization.yaml")).unwrap();
    assert_eq!(kinds(&kustomization), ["Kustomization"], "{kustomization}");
    let listed: Vec<&str> = kustomization
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect();
    assert_eq!(listed.len(), 2, "{kustomization}");
    assert!(!listed.contains(&"kustomization.yaml"), "{kustomization}");
    for file in listed {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert_eq!(kinds(&text), ["BucketEncryption"], "{file}: {text}");
    }
}
