//! State-file benchmark: the `oss-emulator` binary with `--state` and N buckets taking N
//! PutBucketEncryption requests (16 at a time, as the CLI's default concurrency), against the
//! same without `--state`. Every answer is sent only once its write is durable. Prints seconds;
//! numbers, not assertions.
//!
//! `cargo bench --bench state_file -- [--buckets 10000]`

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt as _;
use oss_encryption_operator::oss::{
    BucketTarget, ClientConfig, Credentials, CredentialsProvider, EncryptionRule, Endpoint, OssClient,
};

const ACCESS_KEY_ID: &str = "LTAI5tBenchAccessKeyId";
const ACCESS_KEY_SECRET: &str = "BenchAccessKeySecret0123456789ab";
const REGION: &str = "cn-hangzhou";

struct Run {
    start: f64,
    puts: f64,
    restart: f64,
}

async fn run(buckets: usize, state: Option<&std::path::Path>) -> Run {
    let spawn = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_oss-emulator"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(["--access-key", &format!("{ACCESS_KEY_ID}:{ACCESS_KEY_SECRET}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        if let Some(path) = state {
            command.args(["--state", path.to_str().unwrap()]);
        }
        command
    };
    let started = Instant::now();
    let mut command = spawn();
    for i in 0..buckets {
        command.args(["--bucket", &format!("bench-{i:05}")]);
    }
    let (mut child, url) = listening(command);
    let start = started.elapsed().as_secs_f64();
    let endpoint = Endpoint::parse(&url).unwrap();
    let mut config = ClientConfig {
        qps: 1_000_000.0,
        burst: 1_000_000,
        ..ClientConfig::default()
    };
    config.allow_list.allow(endpoint.authority());
    let client = Arc::new(OssClient::new(config).unwrap());
    let credentials: CredentialsProvider = Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET).into();
    let started = Instant::now();
    let failed = futures_util::stream::iter(0..buckets)
        .map(|i| {
            let (client, credentials, endpoint) = (client.clone(), credentials.clone(), endpoint.clone());
            async move {
                let target = BucketTarget::new(&format!("bench-{i:05}"), REGION)
                    .unwrap()
                    .with_endpoint(endpoint);
                let rule = EncryptionRule::kms(Some(&format!("key-{i}")), None);
                client.put_encryption(&target, &credentials, &rule).await.is_err()
            }
        })
        .buffer_unordered(16)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let puts = started.elapsed().as_secs_f64();
    assert_eq!(failed, 0, "every PUT is answered 200");
    let _ = child.kill();
    let _ = child.wait();
    let restart = if state.is_some() {
        let started = Instant::now();
        let (mut child, _) = listening(spawn());
        let restart = started.elapsed().as_secs_f64();
        let _ = child.kill();
        let _ = child.wait();
        restart
    } else {
        f64::NAN
    };
    Run { start, puts, restart }
}

fn listening(mut command: Command) -> (std::process::Child, String) {
    let mut child = command.spawn().expect("the oss-emulator binary starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().rsplit(' ').next().unwrap().to_owned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let buckets: usize = args
        .iter()
        .position(|a| a == "--buckets")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    oss_encryption_operator::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let memory = run(buckets, None).await;
    let durable = run(buckets, Some(&path)).await;
    let journal = std::fs::metadata(dir.path().join("state.json.journal")).map_or(0, |m| m.len());
    let snapshot = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!("{buckets} buckets, {buckets} PutBucketEncryption, 16 at a time:");
    println!(
        "  without --state: start {:.2} s, PUTs {:.2} s ({:.0}/s)",
        memory.start,
        memory.puts,
        buckets as f64 / memory.puts
    );
    println!(
        "  with --state:    start {:.2} s, PUTs {:.2} s ({:.0}/s), restart (load + replay) {:.2} s",
        durable.start,
        durable.puts,
        buckets as f64 / durable.puts,
        durable.restart
    );
    println!("  state file {snapshot} B, journal {journal} B (after the restart's compaction)");
}
