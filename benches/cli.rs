//! CLI benchmark: the release `oss-encryption-operator` binary doing `apply` and `plan` over N
//! manifests against the in-process OSS emulator, with and without latency and an account cap,
//! each compared with its floor. Prints a table; numbers, not assertions.
//!
//! `cargo bench --bench cli -- [--manifests 1000] [--rss-manifests 10000]`
//!
//! Default CLI flags throughout (adaptive limiters under the OSS and KMS ceilings, concurrency
//! 16, the KMS key pre-flight on), plus what the job needs: the emulator as OSS endpoint and as
//! KMS endpoint (`--kms-endpoint`). Floors: with latency L and concurrency C,
//! `requests × L / C`; with an account cap Q, `requests / Q`. The sequential baseline is the
//! project's own clients one request at a time (GET, DescribeKey when the row names a CMK, PUT):
//! a lower bound for a sequential SDK script, which also pays its own per-call overhead.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oss_encryption_operator::emulator::{EmulatorConfig, Faults, KmsKey};
use oss_encryption_operator::kms::{KmsClient, KmsConfig};
use oss_encryption_operator::oss::{
    BucketTarget, ClientConfig, DataEncryption, EncryptionRule, OssClient, SseAlgorithm,
};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

/// How the KMS rows name their CMKs.
#[derive(Clone, Copy)]
enum Keys {
    /// Every KMS row its own CMK (300 distinct CMKs in 1,000 manifests).
    Distinct,
    /// Three CMKs shared by every KMS row.
    Shared,
}

impl Keys {
    fn name(self, i: usize) -> String {
        match self {
            Self::Distinct => format!("key-{i}"),
            Self::Shared => format!("shared-{}", i % 3),
        }
    }
}

/// The mix: 40% AES256, 30% KMS with a key, 10% KMS+SM4, 10% SM4, 10% None.
fn spec(i: usize, keys: Keys) -> String {
    match i % 10 {
        0..=3 => "algorithm: AES256".into(),
        4..=6 => format!("algorithm: KMS, kmsMasterKeyId: {}", keys.name(i)),
        7 => "algorithm: KMS, kmsDataEncryption: SM4".into(),
        8 => "algorithm: SM4".into(),
        _ => "algorithm: None".into(),
    }
}

fn write_manifests(dir: &Path, n: usize, keys: Keys) -> (String, String) {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "---\napiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {{name: b-{i:05}, namespace: bench}}\nspec: {{bucket: bench-{i:05}, region: {REGION}, {}}}\n",
            spec(i, keys)
        ));
    }
    let tag = match keys {
        Keys::Distinct => "distinct",
        Keys::Shared => "shared",
    };
    let manifests = dir.join(format!("m{n}-{tag}.yaml"));
    std::fs::write(&manifests, text).unwrap();
    let credentials = dir.join("credentials.yaml");
    std::fs::write(
        &credentials,
        format!("accessKeyId: {ACCESS_KEY_ID}\naccessKeySecret: {ACCESS_KEY_SECRET}\n"),
    )
    .unwrap();
    (manifests.display().to_string(), credentials.display().to_string())
}

async fn emulator(n: usize) -> TestOss {
    let key = || KmsKey {
        region: REGION.to_owned(),
        ..KmsKey::default()
    };
    let kms_keys = (0..n)
        .flat_map(|i| [Keys::Distinct.name(i), Keys::Shared.name(i)])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| (id, key()))
        .collect();
    TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: (0..n)
            .map(|i| (format!("bench-{i:05}"), REGION.to_owned()))
            .collect(),
        kms_keys,
        ..EmulatorConfig::default()
    })
    .await
}

/// The sequential baseline: every row's GET, its DescribeKey when it names a CMK, and its PUT
/// when the bucket differs, one request at a time with the project's own clients.
async fn sequential(oss: &TestOss, n: usize, keys: Keys) -> f64 {
    let mut config = ClientConfig::default();
    config.allow_list.allow(oss.emulator.endpoint().authority());
    let client = OssClient::new(config).unwrap();
    let mut kms = KmsConfig {
        endpoint: Some(oss.emulator.endpoint()),
        ..KmsConfig::default()
    };
    kms.allow_list.allow(oss.emulator.endpoint().authority());
    let kms = KmsClient::new(kms).unwrap();
    let started = Instant::now();
    for i in 0..n {
        let target = BucketTarget::new(&format!("bench-{i:05}"), REGION)
            .unwrap()
            .with_endpoint(oss.emulator.endpoint());
        let observed = client
            .get_encryption(&target, &oss.credentials)
            .await
            .unwrap()
            .value;
        let desired = match i % 10 {
            0..=3 => Some(EncryptionRule::new(SseAlgorithm::Aes256)),
            4..=6 => Some(EncryptionRule::kms(Some(&keys.name(i)), None)),
            7 => Some(EncryptionRule::kms(None, Some(DataEncryption::Sm4))),
            8 => Some(EncryptionRule::new(SseAlgorithm::Sm4)),
            _ => None,
        };
        if let Some(key) = desired.as_ref().and_then(|r| r.kms_master_key_id.as_deref()) {
            kms.describe_key(REGION, key, &oss.credentials).await.unwrap();
        }
        if observed != desired
            && let Some(rule) = &desired
        {
            client
                .put_encryption(&target, &oss.credentials, rule)
                .await
                .unwrap();
        }
    }
    started.elapsed().as_secs_f64()
}

/// One run of the binary: (seconds, exit code, peak RSS in MiB, stdout).
async fn run(oss: &TestOss, command: &str, manifests: &str, credentials: &str) -> (f64, i32, f64, String) {
    let args = vec![
        command.to_owned(),
        "-f".into(),
        manifests.to_owned(),
        "--credentials-file".into(),
        credentials.to_owned(),
        "--endpoint".into(),
        oss.emulator.url(),
        "--allowed-endpoint-suffixes".into(),
        oss.emulator.endpoint().authority(),
        "--kms-endpoint".into(),
        oss.emulator.url(),
        "-o".into(),
        "json".into(),
    ];
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut text).unwrap();
            text
        });
        // VmHWM is a high-water mark: its last reading before exit is the peak.
        let mut peak_kib = 0u64;
        while child.try_wait().unwrap().is_none() {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(kib) = status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let code = child.wait().unwrap().code().unwrap_or(-1);
        let elapsed = started.elapsed().as_secs_f64();
        (elapsed, code, peak_kib as f64 / 1024.0, reader.join().unwrap())
    })
    .await
    .unwrap()
}

fn reset_rules(oss: &TestOss, n: usize) {
    for i in 0..n {
        oss.emulator.state().set_rule(&format!("bench-{i:05}"), None);
    }
    oss.emulator.state().reset_counters();
}

/// (all requests, of which DescribeKey, throttled answers).
fn requests(oss: &TestOss) -> (u64, u64, u64) {
    let counters = oss.emulator.state().counters();
    let all: u64 = counters.values().flat_map(|by| by.values()).sum();
    let kms: u64 = counters.get("DescribeKey").map_or(0, |by| by.values().sum());
    let throttled: u64 = counters.values().filter_map(|by| by.get(&503)).sum();
    (all, kms, throttled)
}

fn errors(stdout: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(stdout)
        .ok()
        .and_then(|r| r["errors"].as_u64())
        .unwrap_or(u64::MAX)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    oss_encryption_operator::install_tls_provider();
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let n = value("--manifests", 1000);
    let rss_n = value("--rss-manifests", 10_000);
    let concurrency = 16.0;
    let dir = tempfile::tempdir().unwrap();
    let (manifests, credentials) = write_manifests(dir.path(), n, Keys::Distinct);
    let (shared_manifests, _) = write_manifests(dir.path(), n, Keys::Shared);
    let oss = emulator(n).await;

    println!(
        "CLI benchmark: {n} manifests ({} KMS rows), default flags, {} cores",
        (0..n).filter(|i| (4..=6).contains(&(i % 10))).count(),
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>8} {:>6} {:>10} {:>7}",
        "job", "seconds", "floor", "ratio", "requests", "KMS", "throttled", "errors"
    );
    let line =
        |job: &str, seconds: f64, floor: Option<f64>, (all, kms, throttled): (u64, u64, u64), errors: u64| {
            let (floor_text, ratio) = match floor {
                Some(f) => (format!("{f:.2}"), format!("{:.2}", seconds / f)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{job:<52} {seconds:>9.2} {floor_text:>9} {ratio:>9} {all:>8} {kms:>6} {:>10} {errors:>7}",
                format!(
                    "{throttled} ({:.1}%)",
                    100.0 * throttled as f64 / all.max(1) as f64
                )
            );
        };
    let mut distinct_at_20 = None;
    for (latency_ms, keys, files) in [
        (0u64, "300 distinct CMKs", &manifests),
        (20, "300 distinct CMKs", &manifests),
        (20, "3 shared CMKs", &shared_manifests),
    ] {
        oss.emulator.state().set_faults(Faults {
            latency_ms,
            ..Faults::default()
        });
        reset_rules(&oss, n);
        let floor = |requests: u64| {
            (latency_ms > 0).then(|| requests as f64 * latency_ms as f64 / 1000.0 / concurrency)
        };
        let (seconds, _, _, out) = run(&oss, "apply", files, &credentials).await;
        let counted = requests(&oss);
        line(
            &format!("apply, first run, {keys}, {latency_ms} ms"),
            seconds,
            floor(counted.0),
            counted,
            errors(&out),
        );
        if latency_ms == 20 && files == &manifests {
            distinct_at_20 = Some(seconds);
        }
        oss.emulator.state().reset_counters();
        let (seconds, _, _, out) = run(&oss, "plan", files, &credentials).await;
        let counted = requests(&oss);
        line(
            &format!("plan (nothing to change), {keys}, {latency_ms} ms"),
            seconds,
            floor(counted.0),
            counted,
            errors(&out),
        );
    }
    oss.emulator.state().set_faults(Faults {
        latency_ms: 20,
        ..Faults::default()
    });
    reset_rules(&oss, n);
    let seconds = sequential(&oss, n, Keys::Distinct).await;
    let counted = requests(&oss);
    line(
        "sequential clients, 300 distinct CMKs, 20 ms",
        seconds,
        None,
        counted,
        0,
    );
    if let Some(cli) = distinct_at_20 {
        println!(
            "apply vs sequential, 300 distinct CMKs, 20 ms: {:.1}x faster (goal >= 10x)",
            seconds / cli
        );
    }
    let cap = 100u32;
    oss.emulator.state().set_faults(Faults {
        latency_ms: 20,
        qps_limit: Some(cap),
        ..Faults::default()
    });
    reset_rules(&oss, n);
    let (seconds, _, _, out) = run(&oss, "apply", &manifests, &credentials).await;
    let counted = requests(&oss);
    let ideal = counted.0 - counted.2;
    line(
        &format!("apply, account capped at {cap}/s, 20 ms"),
        seconds,
        Some(ideal as f64 / f64::from(cap)),
        counted,
        errors(&out),
    );
    drop(oss);

    let (rss_manifests, rss_credentials) = write_manifests(dir.path(), rss_n, Keys::Distinct);
    let big = emulator(rss_n).await;
    let (seconds, _, rss, out) = run(&big, "plan", &rss_manifests, &rss_credentials).await;
    let counted = requests(&big);
    line(
        &format!("plan over {rss_n} manifests"),
        seconds,
        None,
        counted,
        errors(&out),
    );
    println!("CLI peak RSS at {rss_n} manifests: {rss:.1} MiB");
}
