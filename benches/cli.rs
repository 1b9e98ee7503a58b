//! CLI benchmark: the release `oss-encryption-operator` binary doing `apply` and `plan` over N
//! manifests against the in-process OSS emulator, with and without latency and an account cap,
//! each compared with its floor. Prints a table; numbers, not assertions.
//!
//! `cargo bench --bench cli -- [--manifests 1000] [--rss-manifests 10000]`
//!
//! Default CLI flags throughout (adaptive limiter under a 500/s ceiling, concurrency 16).
//! Floors: with latency L and concurrency C, `requests × L / C`; with an account cap Q,
//! `requests / Q`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oss_encryption_operator::emulator::{EmulatorConfig, Faults};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

/// The mix: 40% AES256, 30% KMS with a key, 10% KMS+SM4, 10% SM4, 10% None.
fn spec(i: usize) -> String {
    match i % 10 {
        0..=3 => "algorithm: AES256".into(),
        4..=6 => format!("algorithm: KMS, kmsMasterKeyId: key-{i}"),
        7 => "algorithm: KMS, kmsDataEncryption: SM4".into(),
        8 => "algorithm: SM4".into(),
        _ => "algorithm: None".into(),
    }
}

fn write_manifests(dir: &Path, n: usize) -> (String, String) {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "---\napiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {{name: b-{i:05}, namespace: bench}}\nspec: {{bucket: bench-{i:05}, region: {REGION}, {}}}\n",
            spec(i)
        ));
    }
    let manifests = dir.join(format!("m{n}.yaml"));
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
    TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: (0..n)
            .map(|i| (format!("bench-{i:05}"), REGION.to_owned()))
            .collect(),
        ..EmulatorConfig::default()
    })
    .await
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

fn requests(oss: &TestOss) -> (u64, u64) {
    let counters = oss.emulator.state().counters();
    let all: u64 = counters.values().flat_map(|by| by.values()).sum();
    let throttled: u64 = counters.values().filter_map(|by| by.get(&503)).sum();
    (all, throttled)
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
    let (manifests, credentials) = write_manifests(dir.path(), n);
    let oss = emulator(n).await;

    println!(
        "CLI benchmark: {n} manifests, default flags, {} cores",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>8} {:>10} {:>7}",
        "job", "seconds", "floor", "ratio", "requests", "throttled", "errors"
    );
    let line = |job: &str, seconds: f64, floor: Option<f64>, (all, throttled): (u64, u64), errors: u64| {
        let (floor_text, ratio) = match floor {
            Some(f) => (format!("{f:.2}"), format!("{:.2}", seconds / f)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{job:<44} {seconds:>9.2} {floor_text:>9} {ratio:>9} {all:>8} {:>10} {errors:>7}",
            format!(
                "{throttled} ({:.1}%)",
                100.0 * throttled as f64 / all.max(1) as f64
            )
        );
    };
    for latency_ms in [0u64, 20] {
        oss.emulator.state().set_faults(Faults {
            latency_ms,
            ..Faults::default()
        });
        reset_rules(&oss, n);
        let floor = |requests: u64| {
            (latency_ms > 0).then(|| requests as f64 * latency_ms as f64 / 1000.0 / concurrency)
        };
        let (seconds, _, _, out) = run(&oss, "apply", &manifests, &credentials).await;
        let counted = requests(&oss);
        line(
            &format!("apply, first run, {latency_ms} ms latency"),
            seconds,
            floor(counted.0),
            counted,
            errors(&out),
        );
        oss.emulator.state().reset_counters();
        let (seconds, _, _, out) = run(&oss, "plan", &manifests, &credentials).await;
        let counted = requests(&oss);
        line(
            &format!("plan (nothing to change), {latency_ms} ms latency"),
            seconds,
            floor(counted.0),
            counted,
            errors(&out),
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
    let ideal = counted.0 - counted.1;
    line(
        &format!("apply, account capped at {cap}/s, 20 ms"),
        seconds,
        Some(ideal as f64 / f64::from(cap)),
        counted,
        errors(&out),
    );
    drop(oss);

    let (rss_manifests, rss_credentials) = write_manifests(dir.path(), rss_n);
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
