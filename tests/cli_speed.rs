//! The CLI as fast as the account allows: resources run concurrently with rows in manifest order,
//! a throttling account is met by the adaptive limiter (every resource ends correct), and a
//! closed stdout ends the run quietly. Counts and order are asserted, never wall-clock rates.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use oss_encryption_operator::emulator::{EmulatorConfig, Faults};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

const ALGORITHMS: [&str; 4] = ["AES256", "SM4", "KMS", "None"];

/// `count` resources over buckets `speed-0000…`, algorithms in rotation, and a credentials file.
fn manifests(oss: &TestOss, dir: &Path, count: usize) -> (String, String) {
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "---\napiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {{name: r-{i:04}, namespace: ns}}\nspec: {{bucket: speed-{i:04}, region: {REGION}, algorithm: {}}}\n",
            ALGORITHMS[i % ALGORITHMS.len()]
        ));
    }
    let path = dir.join("many.yaml");
    std::fs::write(&path, text).unwrap();
    let credentials = oss.write_credentials(dir);
    (path.display().to_string(), credentials.display().to_string())
}

/// Every bucket holds the rule its manifest wants.
fn assert_every_rule(oss: &TestOss, count: usize) {
    for i in 0..count {
        let rule = oss
            .emulator
            .state()
            .bucket(&format!("speed-{i:04}"))
            .unwrap()
            .rule;
        let wanted = ALGORITHMS[i % ALGORITHMS.len()];
        assert_eq!(
            rule.map(|r| r.algorithm).unwrap_or_else(|| "None".into()),
            wanted,
            "speed-{i:04}"
        );
    }
}

async fn emulator(count: usize) -> TestOss {
    TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: (0..count)
            .map(|i| (format!("speed-{i:04}"), REGION.to_owned()))
            .collect(),
        ..EmulatorConfig::default()
    })
    .await
}

fn args(command: &str, path: &str, credentials: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![command, "-f", path, "--credentials-file", credentials];
    args.extend(extra);
    args.into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn rows_come_out_in_manifest_order_while_resources_run_concurrently() {
    let count = 120;
    let oss = emulator(count).await;
    oss.emulator.state().set_faults(Faults {
        latency_jitter_ms: 40,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (path, credentials) = manifests(&oss, dir.path(), count);
    let (code, stdout, stderr) = oss
        .cli(args("apply", &path, &credentials, &["--concurrency", "16"]))
        .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let names: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("ns/"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let expected: Vec<String> = (0..count).map(|i| format!("ns/r-{i:04}")).collect();
    assert_eq!(names, expected, "manifest order");
    let peak = oss.emulator.state().peak_in_flight();
    assert!(
        (8..=16).contains(&peak),
        "up to 16 resources at once, and more than a few: {peak}"
    );
    assert_every_rule(&oss, count);
    assert!(stdout.contains(&format!("{count} resource(s)")), "{stdout}");
}

#[tokio::test]
async fn a_throttling_account_is_met_by_the_adaptive_limiter() {
    let count = 300;
    let oss = emulator(count).await;
    oss.emulator.state().set_faults(Faults {
        qps_limit: Some(100),
        latency_ms: 5,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (path, credentials) = manifests(&oss, dir.path(), count);
    // Default flags: adaptive mode, ceiling 500, concurrency 16.
    let (code, stdout, stderr) = oss.cli(args("apply", &path, &credentials, &["-o", "json"])).await;
    assert_eq!(code, 0, "every resource applied: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["errors"], 0);
    assert_every_rule(&oss, count);
    let counters = oss.emulator.state().counters();
    let throttled: u64 = counters.values().filter_map(|by| by.get(&503)).sum();
    let answered: u64 = counters.values().flat_map(|by| by.values()).sum();
    println!("{throttled} of {answered} answers throttled");
    // How rare throttles stay is a benchmark number (benches/cli.rs), not a test assertion.
    assert!(
        throttled > 0,
        "the cap was reached, so the limiter had something to adapt to"
    );
}

#[tokio::test]
async fn a_closed_stdout_ends_the_run_quietly() {
    let count = 200;
    let oss = emulator(count).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, credentials) = manifests(&oss, dir.path(), count);
    let endpoint = oss.emulator.url();
    let authority = oss.emulator.endpoint().authority();
    let (first, status, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
            .args(args("plan", &path, &credentials, &["--concurrency", "2"]))
            .args(["--endpoint", &endpoint, "--allowed-endpoint-suffixes", &authority])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -1`: read one line, then close the pipe.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            first,
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(first.starts_with("RESOURCE"), "{first}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(
        status.code().is_some(),
        "ended by itself, not by a signal: {status:?}"
    );
    let gets = oss.emulator.state().total("GetBucketEncryption");
    assert!(
        gets < count as u64,
        "the run stopped early ({gets} of {count} read)"
    );
}

/// Runs `apply` over `count` resources with stdout given by `stdout` (a pipe read for `lines`
/// lines then closed, or a file such as `/dev/full`): (exit code, stderr).
async fn apply_into(
    oss: &TestOss,
    count: usize,
    stdout: Option<std::fs::File>,
    lines: usize,
) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let (path, credentials) = manifests(oss, dir.path(), count);
    let endpoint = oss.emulator.url();
    let authority = oss.emulator.endpoint().authority();
    tokio::task::spawn_blocking(move || {
        let _dir = dir;
        let mut child = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
            .args(args("apply", &path, &credentials, &["--concurrency", "4"]))
            .args(["--endpoint", &endpoint, "--allowed-endpoint-suffixes", &authority])
            .stdout(stdout.map_or_else(Stdio::piped, Stdio::from))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(pipe) = child.stdout.take() {
            // `| head -N`: read N lines, then close the pipe.
            let mut reader = BufReader::new(pipe);
            for _ in 0..lines {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
            }
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.code().is_some(),
            "ended by itself, not by a signal: {:?}",
            output.status
        );
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn apply_piped_into_head_finishes_every_row_and_says_so() {
    let count = 200;
    let oss = emulator(count).await;
    let (code, stderr) = apply_into(&oss, count, None, 3).await;
    assert_every_rule(&oss, count);
    assert_eq!(code, 0, "every row applied: {stderr}");
    assert!(
        stderr.contains(&format!("all {count} rows done")),
        "the closed output is reported with the work done: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn apply_into_a_full_disk_finishes_every_row_and_says_so() {
    let count = 200;
    let oss = emulator(count).await;
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let (code, stderr) = apply_into(&oss, count, Some(full), 0).await;
    assert_every_rule(&oss, count);
    assert_eq!(code, 0, "every row applied: {stderr}");
    assert!(
        stderr.contains(&format!("all {count} rows done"))
            && stderr.contains(&format!("0 of {count} rows shown")),
        "the lost output is reported with the work done: {stderr}"
    );
}
