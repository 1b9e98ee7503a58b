//! Fleet benchmark: the release operator binary against the in-process Kubernetes API test
//! server and OSS emulator, with N BucketEncryption objects. Prints a table (and JSON with
//! `--json FILE`): time to converge, requests per object against the ideal, steady-state cost per
//! resync, peak RSS and CPU of the operator, and the same work done by a bare client loop (the floor).
//!
//! `[FLEET_WRAP="profiler args"] cargo bench --bench fleet -- [--objects 1000] [--concurrency 16] [--qps 200]
//!   [--resync-seconds 30] [--steady-intervals 2] [--json FILE] [--faults]`
//!
//! `--faults` runs the fault soak instead: 30% of OSS calls fail (500 / 503 throttling) with
//! 100 ms added latency, watch streams drop every 10 s, 5% of Kubernetes writes fail (409 / 500),
//! every tenth object is Observe-only, and the operator is killed (SIGKILL) and restarted once
//! mid-run. It passes (exit 0) when every object converges with the right rule, no Observe
//! bucket was written, Ready never flapped after converging, and per-object requests stay bounded.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oss_encryption_operator::api::BucketEncryption;
use oss_encryption_operator::emulator::StoredRule;
use oss_encryption_operator::oss::xml::RawRule;
use oss_encryption_operator::oss::{BucketTarget, ClientConfig, EncryptionRule, OssClient, RetryPolicy};
use serde_json::{Value, json};
use support::kube::KubeApiServer;
use support::kube::store::Writer;
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

struct Options {
    objects: usize,
    concurrency: usize,
    qps: f64,
    resync_seconds: u64,
    steady_intervals: u64,
    json: Option<String>,
    faults: bool,
    /// Run the operator with its default flags (no --concurrency, --oss-qps, --oss-burst).
    defaults: bool,
    /// Cap the emulated account at this many requests per second (503 beyond it).
    cap: Option<u32>,
}

fn options() -> Options {
    let mut o = Options {
        objects: 1000,
        concurrency: 16,
        qps: 200.0,
        resync_seconds: 30,
        steady_intervals: 2,
        json: None,
        faults: false,
        defaults: false,
        cap: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| panic!("{} needs a value", args[i]))
        };
        match args[i].as_str() {
            "--objects" => o.objects = value().parse().expect("--objects N"),
            "--concurrency" => o.concurrency = value().parse().expect("--concurrency N"),
            "--qps" => o.qps = value().parse().expect("--qps N"),
            "--resync-seconds" => o.resync_seconds = value().parse().expect("--resync-seconds N"),
            "--steady-intervals" => o.steady_intervals = value().parse().expect("--steady-intervals N"),
            "--json" => o.json = Some(value()),
            "--cap" => o.cap = Some(value().parse().expect("--cap N")),
            "--defaults" => {
                o.defaults = true;
                i += 1;
                continue;
            }
            "--faults" => {
                o.faults = true;
                i += 1;
                continue;
            }
            // cargo bench passes --bench; other flags are not ours.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(
        o.resync_seconds >= 30,
        "the operator's minimum resync interval is 30 s"
    );
    o
}

/// The CMKs the fleet's KMS buckets share (the pre-flight checks each once per cache TTL).
const SHARED_KEYS: usize = 3;

/// The realistic mix: AES256, KMS (OSS key), KMS with one of 3 shared keys and SM4, SM4, None.
fn wanted(i: usize) -> (Value, Option<EncryptionRule>) {
    use oss_encryption_operator::oss::{DataEncryption, SseAlgorithm};
    match i % 5 {
        0 => (
            json!({"algorithm": "AES256"}),
            Some(EncryptionRule::new(SseAlgorithm::Aes256)),
        ),
        1 => (json!({"algorithm": "KMS"}), Some(EncryptionRule::kms(None, None))),
        2 => (
            json!({"algorithm": "KMS", "kmsMasterKeyId": format!("cmk-{}", i % SHARED_KEYS), "kmsDataEncryption": "SM4"}),
            Some(EncryptionRule::kms(
                Some(&format!("cmk-{}", i % SHARED_KEYS)),
                Some(DataEncryption::Sm4),
            )),
        ),
        3 => (
            json!({"algorithm": "SM4"}),
            Some(EncryptionRule::new(SseAlgorithm::Sm4)),
        ),
        // Removing a rule is a downgrade (buckets start with AES256 or none): allowed explicitly.
        _ => (json!({"algorithm": "None", "allowDowngrade": true}), None),
    }
}

/// Bucket i's starting rule: every third one already right, the rest empty or wrong.
fn initial(i: usize) -> Option<StoredRule> {
    let right = wanted(i).1;
    match i % 3 {
        0 => right.as_ref().map(|r| StoredRule::from(RawRule::from(r))),
        1 => Some(StoredRule {
            algorithm: "AES256".into(),
            ..StoredRule::default()
        })
        .filter(|_| !i.is_multiple_of(5)),
        _ => None,
    }
}

/// In the soak, every tenth object only observes; its bucket holds SM4 and must keep it.
fn observed_only(i: usize) -> bool {
    i % 10 == 9
}

fn observe_start() -> Option<StoredRule> {
    Some(StoredRule {
        algorithm: "SM4".into(),
        ..StoredRule::default()
    })
}

fn bucket(i: usize) -> String {
    format!("fleet-bucket-{i:05}")
}

fn ready_count(server: &KubeApiServer) -> usize {
    ready_by_object(server)
        .values()
        .filter(|status| *status == "True")
        .count()
}

/// Peak RSS (KiB) and CPU seconds of a process, from /proc.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    (rss, ticks / 100.0)
}

fn oss_total(oss: &TestOss, api: &str) -> u64 {
    oss.emulator.state().total(api)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = options();
    oss_encryption_operator::install_tls_provider();
    let n = o.objects;
    println!(
        "fleet benchmark: {n} objects, concurrency {}, OSS QPS {}",
        o.concurrency, o.qps
    );

    let mut kube = KubeApiServer::start().await;
    kube.register_crd(&serde_json::to_value(<BucketEncryption as kube::CustomResourceExt>::crd()).unwrap());
    kube.register_crd(
        &serde_json::to_value(
            <oss_encryption_operator::api::policy::BucketEncryptionPolicy as kube::CustomResourceExt>::crd(),
        )
        .unwrap(),
    );
    let buckets: Vec<String> = (0..n).map(bucket).collect();
    let bucket_refs: Vec<&str> = buckets.iter().map(String::as_str).collect();
    let oss = TestOss::start(&bucket_refs).await;
    for k in 0..SHARED_KEYS {
        let key = oss_encryption_operator::emulator::KmsKey {
            region: REGION.into(),
            ..Default::default()
        };
        oss.emulator.state().put_kms_key(&format!("cmk-{k}"), key);
    }
    for i in 0..n {
        let start = if o.faults && observed_only(i) {
            observe_start()
        } else {
            initial(i)
        };
        oss.emulator.state().set_rule(&bucket(i), start);
    }
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube.client(), "fleet");
    let secret = serde_json::from_value(json!({"metadata": {"name": "creds"},
        "stringData": {"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}}))
    .unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    {
        let mut store = kube.store();
        let def = store
            .def("oss.encryption.dev", "v1alpha1", "bucketencryptions")
            .unwrap()
            .clone();
        for i in 0..n {
            let mut spec = json!({"bucket": bucket(i), "region": REGION, "endpoint": oss.emulator.url(),
                "credentials": {"secretRef": {"name": "creds"}}});
            for (k, v) in wanted(i).0.as_object().unwrap() {
                spec[k] = v.clone();
            }
            if i.is_multiple_of(4) {
                spec["deletionPolicy"] = json!("Delete");
            }
            if o.faults && observed_only(i) {
                spec = json!({"bucket": bucket(i), "region": REGION, "endpoint": oss.emulator.url(),
                    "credentials": {"secretRef": {"name": "creds"}},
                    "algorithm": "AES256", "managementPolicy": "Observe"});
            }
            let object = json!({"apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
                "metadata": {"name": format!("fleet-{i:05}")}, "spec": spec});
            store
                .create(&def, "fleet", object, &Writer::default(), false)
                .unwrap();
        }
    }
    let with_finalizer = (0..n).filter(|i| i.is_multiple_of(4)).count();
    let needing_write = (0..n)
        .filter(|&i| initial(i).as_ref().map(RawRule::from) != wanted(i).1.as_ref().map(RawRule::from))
        .count();
    oss.emulator.state().reset_counters();
    kube.reset_counters();

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig_yaml()).unwrap();
    let spawn = || {
        // FLEET_WRAP runs the operator under a profiler (e.g. `heaptrack -o FILE` or
        // `perf record -g -o FILE`); RSS and CPU are then the wrapper's, not the operator's.
        let wrap: Vec<String> = std::env::var("FLEET_WRAP")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut command = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_oss-encryption-operator"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator")),
        };
        command
            .arg("run")
            .args([
                "--allowed-endpoint-suffixes",
                &oss.emulator.endpoint().authority(),
            ])
            .args([
                "--allow-operator-credentials",
                "false",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(["--resync-interval", &format!("{}s", o.resync_seconds)])
            // The KMS pre-flight is on by default; its gateway here is the emulator.
            .args(["--kms-endpoint", &oss.emulator.url()])
            .args(if o.defaults {
                Vec::new()
            } else {
                vec![
                    "--concurrency".to_owned(),
                    o.concurrency.to_string(),
                    "--oss-qps".to_owned(),
                    o.qps.to_string(),
                    "--oss-burst".to_owned(),
                    o.concurrency.to_string(),
                ]
            })
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the release operator binary runs")
    };
    if o.faults {
        std::process::exit(soak(&o, &mut kube, &oss, spawn).await);
    }
    if let Some(cap) = o.cap {
        oss.emulator
            .state()
            .set_faults(oss_encryption_operator::emulator::Faults {
                qps_limit: Some(cap),
                ..Default::default()
            });
    }
    let started = Instant::now();
    let mut child = spawn();
    let pid = child.id();
    while ready_count(&kube) < n {
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "did not converge within an hour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged = started.elapsed();
    let converge_oss: BTreeMap<&str, u64> = [
        "GetBucketEncryption",
        "PutBucketEncryption",
        "DeleteBucketEncryption",
    ]
    .into_iter()
    .map(|api| (api, oss_total(&oss, api)))
    .collect();
    let converge_kms = oss_total(&oss, "DescribeKey");
    let converge_kube = kube.counters();
    let throttled = |oss: &TestOss| -> u64 {
        oss.emulator
            .state()
            .counters()
            .values()
            .filter_map(|by| by.get(&503))
            .sum()
    };
    let converge_throttled = throttled(&oss);
    let (rss_converged, cpu_converged) = usage(pid);

    // Steady state: several resync intervals with everything in sync, measured from just after
    // convergence (2 s for the last events to land), so it includes every object's first resync:
    // the one that confirms what was just written, which must write nothing either.
    let rate = if o.defaults {
        oss_encryption_operator::oss::DEFAULT_QPS_CEILING
    } else {
        o.qps
    };
    let rate = o.cap.map_or(rate, |cap| rate.min(f64::from(cap)));
    let effective_resync =
        oss_encryption_operator::reconcile::resync_interval(Duration::from_secs(o.resync_seconds), n, rate);
    tokio::time::sleep(Duration::from_secs(2)).await;
    oss.emulator.state().reset_counters();
    kube.reset_counters();
    let window = effective_resync.mul_f64(o.steady_intervals as f64);
    tokio::time::sleep(window).await;
    let steady_gets = oss_total(&oss, "GetBucketEncryption");
    let steady_other = oss_total(&oss, "PutBucketEncryption") + oss_total(&oss, "DeleteBucketEncryption");
    let steady_writes = kube.writes();
    let steady_kms = oss_total(&oss, "DescribeKey");
    let steady_throttled = throttled(&oss);
    let (rss_peak, cpu_total) = usage(pid);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();

    // The floor: the same reads and writes from a bare loop under the operator's own limits:
    // the same account (cap included), the same client ceiling, burst and rate mode, and the
    // operator's concurrency. A floor measured under other limits is not a floor.
    oss.emulator
        .state()
        .set_faults(oss_encryption_operator::emulator::Faults {
            qps_limit: o.cap,
            ..Default::default()
        });
    for i in 0..n {
        oss.emulator.state().set_rule(&bucket(i), initial(i));
    }
    let (floor_qps, floor_burst, floor_concurrency) = floor_limits(&o);
    let mut config = ClientConfig {
        qps: floor_qps,
        burst: floor_burst,
        retry: RetryPolicy::default(),
        ..ClientConfig::default()
    };
    config.allow_list.allow(oss.emulator.endpoint().authority());
    let client = Arc::new(OssClient::new(config).unwrap());
    let floor_started = Instant::now();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let credentials = oss.credentials.clone();
            let target = BucketTarget::new(&bucket(i), REGION)
                .unwrap()
                .with_endpoint(oss.emulator.endpoint());
            async move {
                let observed = client.get_encryption(&target, &credentials).await.unwrap().value;
                let desired = wanted(i).1;
                if observed != desired {
                    match &desired {
                        Some(rule) => client
                            .put_encryption(&target, &credentials, rule)
                            .await
                            .map(|_| ()),
                        None => client.delete_encryption(&target, &credentials).await.map(|_| ()),
                    }
                    .unwrap();
                }
            }
        })
        .buffer_unordered(floor_concurrency)
        .collect::<Vec<()>>()
        .await;
    let floor = floor_started.elapsed();

    let per = |x: u64| x as f64 / n as f64;
    let count = |verb: &str| -> u64 {
        converge_kube
            .iter()
            .filter(|(k, _)| k.starts_with(verb))
            .map(|(_, v)| v)
            .sum()
    };
    let status_patches = converge_kube
        .get("patch bucketencryptions/status")
        .copied()
        .unwrap_or(0);
    let finalizer_patches = converge_kube.get("patch bucketencryptions").copied().unwrap_or(0);
    let event_writes = count("create events") + count("patch events");
    // Every resource names the one Secret: reconciles share a read for a second.
    let secret_reads = count("get secrets");
    let report = json!({
        "objects": n,
        "concurrency": o.concurrency,
        "ossQps": o.qps,
        "convergeSeconds": converged.as_secs_f64(),
        "objectsPerSecond": n as f64 / converged.as_secs_f64(),
        "secretReadsPerObject": per(secret_reads),
        "ossPerObject": {
            "get": per(converge_oss["GetBucketEncryption"]),
            "putOrDelete": per(converge_oss["PutBucketEncryption"] + converge_oss["DeleteBucketEncryption"]),
            "idealPutOrDelete": per(needing_write as u64),
        },
        "kmsDescribeKeyToConverge": converge_kms,
        "sharedKeys": SHARED_KEYS,
        "kubeWritesPerObject": {
            "statusPatch": per(status_patches),
            "finalizerPatch": per(finalizer_patches),
            "idealFinalizerPatch": per(with_finalizer as u64),
            "events": per(event_writes),
        },
        "steadyState": {
            "intervals": o.steady_intervals,
            "resyncSeconds": effective_resync.as_secs_f64(),
            "getsPerObjectPerResync": steady_gets as f64 / n as f64 / o.steady_intervals as f64,
            "ossWrites": steady_other,
            "kmsDescribeKey": steady_kms,
            "kubeWrites": steady_writes,
        },
        "operator": {
            "peakRssMiB": rss_peak as f64 / 1024.0,
            "peakRssMiBPer1000Objects": rss_peak as f64 / 1024.0 / (n as f64 / 1000.0),
            "rssAtConvergenceMiB": rss_converged as f64 / 1024.0,
            "cpuSecondsToConverge": cpu_converged,
            "cpuSecondsTotal": cpu_total,
            "cpuSecondsPer1000ObjectsToConverge": cpu_converged / (n as f64 / 1000.0),
        },
        "floorSeconds": floor.as_secs_f64(),
        "operatorToFloorRatio": converged.as_secs_f64() / floor.as_secs_f64(),
    });
    println!();
    println!("{:<44} {:>12} {:>12}", "measure", "value", "ideal");
    let row = |name: &str, value: String, ideal: &str| println!("{name:<44} {value:>12} {ideal:>12}");
    row(
        "time to all Ready=True (s)",
        format!("{:.2}", converged.as_secs_f64()),
        "",
    );
    row(
        "throughput (objects/s)",
        format!("{:.1}", n as f64 / converged.as_secs_f64()),
        "",
    );
    row(
        "KMS DescribeKey calls to converge",
        converge_kms.to_string(),
        &format!("{SHARED_KEYS}"),
    );
    row(
        "KMS DescribeKey calls in steady state",
        steady_kms.to_string(),
        &format!("{SHARED_KEYS}/TTL"),
    );
    if let Some(cap) = o.cap {
        let requests = converge_oss.values().sum::<u64>() - converge_throttled;
        let cap_floor = requests as f64 / f64::from(cap);
        row("account cap (requests/s)", cap.to_string(), "");
        row("cap-bound floor (s)", format!("{cap_floor:.2}"), "");
        row(
            "time to all Ready / cap-bound floor",
            format!("{:.2}", converged.as_secs_f64() / cap_floor),
            "<= 1.3",
        );
        row(
            "throttled answers while converging",
            format!(
                "{converge_throttled} ({:.1}%)",
                100.0 * converge_throttled as f64 / converge_oss.values().sum::<u64>().max(1) as f64
            ),
            "",
        );
        row(
            "throttled answers in steady state",
            steady_throttled.to_string(),
            "0",
        );
    }
    let (floor_qps, floor_burst, floor_concurrency) = floor_limits(&o);
    println!(
        "floor: a bare client loop under the operator's limits: {floor_concurrency} at once, \
         ceiling {floor_qps}/s, burst {floor_burst}, adaptive, account cap {}",
        o.cap.map_or("none".to_owned(), |c| format!("{c}/s"))
    );
    println!(
        "flags: {}",
        if o.defaults {
            "the operator's defaults (adaptive limiter, ceiling 1000/s, concurrency 8)".to_owned()
        } else {
            format!(
                "--concurrency {} --oss-qps {} --oss-burst {}",
                o.concurrency, o.qps, o.concurrency
            )
        }
    );
    row(
        "OSS GET per object",
        format!("{:.3}", report["ossPerObject"]["get"].as_f64().unwrap()),
        "1",
    );
    row(
        "OSS PUT+DELETE per object",
        format!("{:.3}", report["ossPerObject"]["putOrDelete"].as_f64().unwrap()),
        &format!("{:.3}", per(needing_write as u64)),
    );
    row(
        "status patches per object",
        format!("{:.3}", per(status_patches)),
        "<= 1",
    );
    row(
        "finalizer patches per object",
        format!("{:.3}", per(finalizer_patches)),
        &format!("{:.3}", per(with_finalizer as u64)),
    );
    row("event writes per object", format!("{:.3}", per(event_writes)), "");
    row("Secret reads per object", format!("{:.3}", per(secret_reads)), "");
    row(
        "steady: GET per object per resync",
        format!(
            "{:.3}",
            report["steadyState"]["getsPerObjectPerResync"].as_f64().unwrap()
        ),
        "1",
    );
    row("steady: OSS writes", steady_other.to_string(), "0");
    row("steady: Kubernetes writes", steady_writes.to_string(), "0");
    row(
        "operator peak RSS (MiB)",
        format!("{:.1}", rss_peak as f64 / 1024.0),
        "",
    );
    row("operator CPU to converge (s)", format!("{cpu_converged:.2}"), "");
    row(
        "floor: bare client loop (s)",
        format!("{:.2}", floor.as_secs_f64()),
        "",
    );
    row(
        "operator / floor",
        format!("{:.2}", converged.as_secs_f64() / floor.as_secs_f64()),
        "<= 1.2",
    );
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        println!("\nwrote {path}");
    }
}

/// Ready status of every fleet object, from the test server's store.
fn ready_by_object(kube: &KubeApiServer) -> BTreeMap<String, String> {
    let store = kube.store();
    let def = store
        .def("oss.encryption.dev", "v1alpha1", "bucketencryptions")
        .unwrap()
        .clone();
    store
        .iter(&def, "fleet")
        .map(|o| {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["status"].as_str())
                .unwrap_or("")
                .to_owned();
            (o["metadata"]["name"].as_str().unwrap_or("").to_owned(), ready)
        })
        .collect()
}

/// The fault soak; returns the process exit code (0 = passed).
async fn soak(
    o: &Options,
    kube: &mut KubeApiServer,
    oss: &TestOss,
    spawn: impl Fn() -> std::process::Child,
) -> i32 {
    use oss_encryption_operator::emulator::Faults;
    let n = o.objects;
    oss.emulator.state().set_faults(Faults {
        latency_ms: 100,
        internal_error_rate: 0.15,
        throttle_rate: 0.15,
        ..Faults::default()
    });
    kube.set_faults(support::kube::KubeFaults {
        fail_rate: 0.05,
        fail_with: vec![409, 500],
        writes_only: true,
        drop_watches_every: Some(Duration::from_secs(10)),
        ..Default::default()
    });
    let name = |i: usize| format!("fleet-{i:05}");
    let wanted_ready = |i: usize| if observed_only(i) { "False" } else { "True" };
    let started = Instant::now();
    let mut child = spawn();
    let mut restarted = false;
    let mut converged_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut flaps: BTreeMap<String, u32> = BTreeMap::new();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let deadline = started + Duration::from_secs(1800);
    let mut all_converged: Option<Instant> = None;
    loop {
        let states = ready_by_object(kube);
        for i in 0..n {
            let key = name(i);
            let now = states.get(&key).cloned().unwrap_or_default();
            if now == wanted_ready(i) {
                converged_at.entry(key.clone()).or_insert_with(Instant::now);
            } else if converged_at.contains_key(&key) && last.get(&key) == Some(&wanted_ready(i).to_owned()) {
                *flaps.entry(key.clone()).or_default() += 1;
            }
            last.insert(key, now);
        }
        if !restarted && converged_at.len() >= n / 2 {
            // Kill the operator mid-run (no graceful shutdown) and start it again.
            let _ = child.kill();
            let _ = child.wait();
            child = spawn();
            restarted = true;
            println!(
                "killed and restarted the operator at {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        if all_converged.is_none() && converged_at.len() == n {
            all_converged = Some(Instant::now());
        }
        // Keep watching one resync interval after convergence, for flaps.
        if all_converged.is_some_and(|t| t.elapsed() > Duration::from_secs(o.resync_seconds)) {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let mut wrong = Vec::new();
    let mut observe_written = Vec::new();
    for i in 0..n {
        let rule = oss.emulator.state().bucket(&bucket(i)).and_then(|b| b.rule);
        let expected = if observed_only(i) {
            observe_start()
        } else {
            wanted(i).1.as_ref().map(|r| StoredRule::from(RawRule::from(r)))
        };
        if rule != expected {
            if observed_only(i) {
                observe_written.push(bucket(i));
            } else {
                wrong.push(bucket(i));
            }
        }
    }
    let per_bucket = oss.emulator.state().bucket_requests();
    let worst = per_bucket.values().copied().max().unwrap_or(0);
    let total: u64 = per_bucket.values().sum();
    let flapped = flaps.values().filter(|f| **f > 1).count();
    let converge_seconds = all_converged.map(|t| (t - started).as_secs_f64());
    println!("\nfault soak: {n} objects");
    println!(
        "  converged: {}",
        converge_seconds.map_or("NO".to_owned(), |s| format!("{s:.1} s"))
    );
    println!("  wrong rules: {}", wrong.len());
    println!("  Observe buckets written: {}", observe_written.len());
    println!("  objects whose Ready flapped more than once after converging: {flapped}");
    println!(
        "  OSS requests: {total} ({:.1} per object, worst bucket {worst})",
        total as f64 / n as f64
    );
    let passed = converge_seconds.is_some() && wrong.is_empty() && observe_written.is_empty() && flapped == 0;
    println!("  result: {}", if passed { "PASSED" } else { "FAILED" });
    if let Some(path) = &o.json {
        let report = json!({"objects": n, "convergeSeconds": converge_seconds, "wrongRules": wrong,
            "observeWritten": observe_written, "flapped": flapped, "ossRequests": total, "worstBucketRequests": worst,
            "passed": passed});
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    if passed { 0 } else { 1 }
}

/// The operator's limits as run: (OSS ceiling, burst, concurrency), the defaults' with
/// `--defaults`, else the flags passed to it.
fn floor_limits(o: &Options) -> (f64, u32, usize) {
    if o.defaults {
        let client = ClientConfig::default();
        let settings = oss_encryption_operator::reconcile::Settings::default();
        (client.qps, client.burst, usize::from(settings.concurrency))
    } else {
        (o.qps, o.concurrency as u32, o.concurrency)
    }
}
