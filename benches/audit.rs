//! Audit benchmark: the `oss-encryption-operator audit` binary (default flags) over a bucket of
//! 1,000,000 seeded objects in the in-process OSS emulator, `--sample 1000`: the whole listing
//! (1,000 ListObjectsV2 pages) plus 1,000 HeadObject requests. Prints wall time, requests, and
//! the CLI's peak RSS (the emulator runs in this process, not in the measured one); numbers, not
//! assertions. Then the same with `--sample 10000`, to show that memory stays flat.
//!
//! `cargo bench --bench audit -- [--objects 1000000] [--sample 1000]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oss_encryption_operator::emulator::objects::{ObjectSse, Seed};
use support::oss::TestOss;

/// One run of the binary: (seconds, exit code, peak RSS in MiB, stdout).
async fn run(oss: &TestOss, args: Vec<String>) -> (f64, i32, f64, String) {
    let mut args = args;
    args.extend([
        "--endpoint".into(),
        oss.emulator.url(),
        "--allowed-endpoint-suffixes".into(),
        oss.emulator.endpoint().authority(),
    ]);
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
        (
            started.elapsed().as_secs_f64(),
            code,
            peak_kib as f64 / 1024.0,
            reader.join().unwrap(),
        )
    })
    .await
    .unwrap()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    oss_encryption_operator::install_tls_provider();
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let objects = value("--objects", 1_000_000);
    let sample = value("--sample", 1000);

    let oss = TestOss::start(&["audit-bench"]).await;
    let seeded = Instant::now();
    // A bucket whose history shows: 10% unencrypted, 20% AES256, 60% KMS, 10% KMS+SM4.
    let mut mix = vec![ObjectSse::none()];
    mix.extend(std::iter::repeat_n(ObjectSse::service("AES256"), 2));
    mix.extend(std::iter::repeat_n(ObjectSse::kms("bench-key", false), 6));
    mix.push(ObjectSse::kms("", true));
    oss.emulator
        .state()
        .seed_objects(
            "audit-bench",
            Seed {
                prefix: "data/2024/".into(),
                count: objects,
                encryptions: mix,
                last_modified: None,
                size: 4096,
            },
        )
        .unwrap();
    println!(
        "seeded {objects} objects in {:.3} s",
        seeded.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bucket.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: audit-bench, namespace: bench}\nspec: {bucket: audit-bench, region: cn-hangzhou, algorithm: KMS, kmsMasterKeyId: bench-key}\n",
    )
    .unwrap();
    let credentials = oss.write_credentials(dir.path());

    println!("| run | wall s | ListObjectsV2 | HeadObject | peak RSS MiB | below rule (estimate, 95%) |");
    println!("|---|---|---|---|---|---|");
    for n in [sample, sample * 10] {
        oss.emulator.state().reset_counters();
        let (seconds, code, rss, stdout) = run(
            &oss,
            vec![
                "audit".into(),
                "-f".into(),
                manifest.display().to_string(),
                "--credentials-file".into(),
                credentials.display().to_string(),
                "--sample".into(),
                n.to_string(),
                "-o".into(),
                "json".into(),
            ],
        )
        .await;
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        let bucket = &report["buckets"][0];
        let share = &bucket["belowRuleShare"];
        println!(
            "| {objects} objects, --sample {n} (exit {code}) | {seconds:.2} | {} | {} | {rss:.1} | {:.1}% [{:.1}%, {:.1}%] |",
            oss.emulator.state().total("ListObjectsV2"),
            oss.emulator.state().total("HeadObject"),
            share["estimate"].as_f64().unwrap_or(f64::NAN) * 100.0,
            share["low"].as_f64().unwrap_or(f64::NAN) * 100.0,
            share["high"].as_f64().unwrap_or(f64::NAN) * 100.0,
        );
        if bucket["objects"]["examined"] != n {
            println!(
                "warning: {} objects examined, not {n}: {stdout}",
                bucket["objects"]["examined"]
            );
        }
    }
}
