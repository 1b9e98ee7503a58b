//! Slow-client benchmark: the `oss-emulator` binary (as the in-cluster demo runs it, 64 Mi
//! limit) facing N clients that send a PutBucketEncryption head and never finish the body —
//! half trickle one byte every 100 ms, half send all but the last byte at once and stall —
//! while a normal client keeps sending GET and PUT. Prints the emulator's peak and settled RSS,
//! the normal requests' latency while the slow clients hold their connections, and how the
//! slow clients were answered. Numbers, not assertions; targets: peak RSS < 64 MiB, normal
//! latency < 1 s.
//!
//! `cargo bench --bench slow_clients -- [--clients 2000]`

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oss_encryption_operator::oss::{
    ClientConfig, Credentials, CredentialsProvider, EncryptionRule, OssClient, SseAlgorithm,
};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const LENGTH: usize = 60_000;

/// `VmRSS` and `VmHWM` of a process, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One slow client; returns the status line it was answered with ("" when only closed).
async fn slow_client(addr: String, stall: bool) -> String {
    let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
        return "connect failed".into();
    };
    let (mut reader, mut writer) = stream.into_split();
    let head = format!("PUT /slow/?encryption HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {LENGTH}\r\n\r\n");
    if writer.write_all(head.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let drip = tokio::spawn(async move {
        if stall {
            let _ = writer.write_all(&vec![b' '; LENGTH - 1]).await;
        } else {
            for _ in 0..LENGTH - 1 {
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while let Ok(n @ 1..) = reader.read(&mut chunk).await {
        answer.extend_from_slice(&chunk[..n]);
    }
    drip.abort();
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or("").to_owned();
    let code = text
        .split("<Code>")
        .nth(1)
        .and_then(|c| c.split("</Code>").next())
        .unwrap_or("");
    format!("{status} {code}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args
        .iter()
        .position(|a| a == "--clients")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    oss_encryption_operator::install_tls_provider();

    let mut child = Command::new(env!("CARGO_BIN_EXE_oss-emulator"))
        .args(["--listen", "127.0.0.1:0", "--bucket", "slow", "--bucket", "fast"])
        .args(["--access-key", &format!("{ACCESS_KEY_ID}:{ACCESS_KEY_SECRET}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the oss-emulator binary starts");
    let pid = child.id();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    let addr = url.trim_start_matches("http://").to_owned();

    let mut config = ClientConfig::default();
    let endpoint = oss_encryption_operator::oss::Endpoint::parse(&url).unwrap();
    config.allow_list.allow(endpoint.authority());
    let client = OssClient::new(config).unwrap();
    let credentials: CredentialsProvider = Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET).into();
    let target = oss_encryption_operator::oss::BucketTarget::new("fast", REGION)
        .unwrap()
        .with_endpoint(endpoint);
    let rule = EncryptionRule::new(SseAlgorithm::Aes256);
    client.put_encryption(&target, &credentials, &rule).await.unwrap();
    let (idle, _) = rss(pid);

    let started = Instant::now();
    let slow: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(slow_client(addr.clone(), i % 2 == 1)))
        .collect();
    // Normal requests for 8 s while the slow clients hold their connections (the emulator
    // answers them after its 10 s body deadline).
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut held = 0.0f64;
    while started.elapsed() < Duration::from_secs(8) {
        let sent = Instant::now();
        let ok = if latencies.len() % 2 == 0 {
            client.get_encryption(&target, &credentials).await.is_ok()
        } else {
            client.put_encryption(&target, &credentials, &rule).await.is_ok()
        };
        latencies.push(sent.elapsed());
        failures += usize::from(!ok);
        held = held.max(rss(pid).0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for task in slow {
        *answers.entry(task.await.unwrap()).or_default() += 1;
    }
    let all_answered = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, peak) = rss(pid);
    latencies.sort();

    println!("slow clients: {clients} (half trickling 1 B/100 ms, half stalled 1 B short of {LENGTH} B)");
    println!(
        "emulator RSS: idle {idle:.1} MiB, peak {peak:.1} MiB (target < 64), highest while held {held:.1} MiB, 2 s after they left {after:.1} MiB"
    );
    println!(
        "normal requests meanwhile: {} ({} failed), latency p50 {:?} p99 {:?} max {:?} (target < 1 s)",
        latencies.len(),
        failures,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    println!("slow clients answered within {all_answered:.1?}:");
    for (answer, count) in answers {
        println!("  {count:>6}  {answer}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
