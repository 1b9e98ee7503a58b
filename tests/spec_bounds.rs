//! Property test: arbitrary specs and durations through validate → plan → requeue never panic,
//! and a resync interval is accepted exactly when it lies within 30s..24h. Seeded, so a failure
//! reproduces; the seed is printed.

use std::time::Duration;

use oss_encryption_operator::api::{BucketEncryption, ManagementPolicy};
use oss_encryption_operator::oss::{DataEncryption, EncryptionRule, SseAlgorithm};
use oss_encryption_operator::reconcile::plan::{Downgrades, plan};
use oss_encryption_operator::reconcile::schedule::{MAX_REQUEUE, jittered, resync_interval};
use serde_json::{Value, json};

const UNITS: [(&str, f64); 4] = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// A well-formed Go-style duration and its length in seconds, computed independently.
fn duration(rng: &mut fastrand::Rng) -> (String, f64) {
    let mut text = String::new();
    let mut seconds = 0.0;
    for _ in 0..rng.usize(1..4) {
        let whole = match rng.u8(0..4) {
            0 => rng.u64(0..10),
            1 => rng.u64(0..1_000),
            2 => rng.u64(0..100_000),
            _ => rng.u64(0..u64::MAX / 2),
        };
        let (unit, scale) = UNITS[rng.usize(..UNITS.len())];
        let (value, shown) = if rng.bool() {
            let tenths = rng.u64(0..10);
            (whole as f64 + tenths as f64 / 10.0, format!("{whole}.{tenths}"))
        } else {
            (whole as f64, whole.to_string())
        };
        text.push_str(&shown);
        text.push_str(unit);
        seconds += value * scale;
    }
    (text, seconds)
}

/// Any string at all from the characters a duration is made of (and a few others).
fn noise(rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8] = b"0123456789.hmsu e-+";
    (0..rng.usize(0..40))
        .map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char)
        .collect()
}

fn random_spec(rng: &mut fastrand::Rng, resync: &str) -> Value {
    let algorithms = ["None", "AES256", "KMS", "SM4", "DES", ""];
    let buckets = ["audit-logs", "a", "UPPER", "ok-bucket-1", ""];
    let regions = ["cn-hangzhou", "", "cn_bad"];
    let keys = ["", "k-1", "  "];
    let endpoints = ["https://oss-cn-hangzhou.aliyuncs.com", "http://127.0.0.1:1", "::"];
    let mut spec = json!({
        "bucket": buckets[rng.usize(..buckets.len())],
        "region": regions[rng.usize(..regions.len())],
        "algorithm": algorithms[rng.usize(..algorithms.len())],
        "resyncInterval": resync,
    });
    if rng.bool() {
        spec["kmsMasterKeyId"] = json!(keys[rng.usize(..keys.len())]);
    }
    if rng.bool() {
        spec["kmsDataEncryption"] = json!("SM4");
    }
    if rng.bool() {
        spec["endpoint"] = json!(endpoints[rng.usize(..endpoints.len())]);
    }
    if rng.bool() {
        spec["managementPolicy"] = json!("Observe");
    }
    spec
}

fn observed(rng: &mut fastrand::Rng) -> Option<EncryptionRule> {
    match rng.u8(0..4) {
        0 => None,
        1 => Some(EncryptionRule::new(SseAlgorithm::Aes256)),
        2 => Some(EncryptionRule::new(SseAlgorithm::Sm4)),
        _ => Some(EncryptionRule::kms(Some("k-1"), Some(DataEncryption::Sm4))),
    }
}

/// validate → plan → requeue for one spec; returns the validated interval, if any.
fn run_one(rng: &mut fastrand::Rng, spec: Value) -> Option<Result<Option<Duration>, String>> {
    let document = json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
        "metadata": {"name": "r", "namespace": "ns"}, "spec": spec,
    });
    let resource: BucketEncryption = serde_json::from_value(document).ok()?;
    let desired = match resource.spec.validate() {
        Ok(desired) => desired,
        Err(invalid) => return Some(Err(invalid.to_string())),
    };
    let policy = resource.spec.management_policy;
    let downgrades = Downgrades::allowed(desired.allow_downgrade);
    let decision = plan(desired.rule.as_ref(), observed(rng).as_ref(), policy, downgrades);
    if policy == ManagementPolicy::Observe {
        assert_eq!(
            decision.action,
            oss_encryption_operator::reconcile::plan::Action::Nothing
        );
    }
    let objects = [0, 1, 10_000, usize::MAX][rng.usize(..4)];
    let qps = [10.0, 0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300][rng.usize(..6)];
    let interval = desired.resync_interval.unwrap_or(Duration::from_secs(300));
    let requeue = jittered(resync_interval(interval, objects, qps), rng.f64());
    assert!(requeue <= MAX_REQUEUE.mul_f64(1.1));
    assert!(
        tokio::time::Instant::now().checked_add(requeue).is_some(),
        "kube-runtime's scheduler adds this to now"
    );
    Some(Ok(desired.resync_interval))
}

#[test]
fn arbitrary_specs_never_panic_and_intervals_are_bounded() {
    let seed = std::env::var("SPEC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (SPEC_SEED={seed} reproduces)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let (text, seconds) = duration(&mut rng);
        if [30.0, 86_400.0].iter().any(|b: &f64| (seconds - b).abs() < 1e-6) {
            continue; // exactly on a bound: float rounding may go either way; see the_bounds_themselves
        }
        let spec = random_spec(&mut rng, &text);
        let valid_otherwise = {
            let mut probe = spec.clone();
            probe["resyncInterval"] = json!("5m");
            matches!(run_one(&mut rng, probe), Some(Ok(_)))
        };
        match run_one(&mut rng, spec) {
            Some(Ok(interval)) => {
                let interval = interval.expect("a set interval is reported");
                assert!(
                    (30.0..=86_400.0).contains(&seconds),
                    "{text} ({seconds} s) accepted"
                );
                assert!((interval.as_secs_f64() - seconds).abs() < 1e-6 * seconds.max(1.0));
                accepted += 1;
            }
            Some(Err(message)) if valid_otherwise => {
                assert!(
                    !(30.0..=86_400.0).contains(&seconds),
                    "{text} ({seconds} s) refused: {message}"
                );
                assert!(message.contains("spec.resyncInterval"), "{message}");
                assert!(message.len() < 400, "the message does not echo huge input");
                refused += 1;
            }
            _ => {}
        }
        let garbage = noise(&mut rng);
        let spec = random_spec(&mut rng, &garbage);
        if let Some(Ok(Some(interval))) = run_one(&mut rng, spec) {
            assert!(
                (Duration::from_secs(30)..=Duration::from_secs(86_400)).contains(&interval),
                "{garbage:?}"
            );
        }
    }
    println!("{accepted} intervals accepted, {refused} refused");
    assert!(accepted > 100 && refused > 100, "both sides exercised");
}

#[test]
fn the_bounds_themselves() {
    let mut rng = fastrand::Rng::with_seed(7);
    let base = |resync: &str| json!({"bucket": "audit-logs", "region": "cn-hangzhou", "algorithm": "AES256", "resyncInterval": resync});
    for (text, ok) in [
        ("30s", true),
        ("29.9s", false),
        ("24h", true),
        ("1440m", true),
        ("86400s", true),
        ("24h1ms", false),
        ("5000000000000000h", false),
        ("99999999999999999999999999999h", false),
        ("", true),
        ("1..5h", false),
        ("1e5s", false),
    ] {
        let result = run_one(&mut rng, base(text)).expect("deserialises");
        assert_eq!(result.is_ok(), ok, "{text:?}: {result:?}");
    }
}
