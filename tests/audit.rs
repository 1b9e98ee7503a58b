//! `audit` end to end: the binary against the emulator holding objects of every encryption kind,
//! with exact counts, `belowRule`, the oldest and newest such object, the exit code, `--sample`
//! examining exactly N, `--all-buckets` against each bucket's own rule, and bad input that
//! touches nothing.

mod support;

use jiff::Timestamp;
use oss_encryption_operator::emulator::StoredRule;
use oss_encryption_operator::emulator::objects::{MANAGED_CMK_ID, ObjectSse, Seed, StoredObject};
use serde_json::{Value, json};
use support::oss::TestOss;

fn object(sse: ObjectSse, modified: &str) -> StoredObject {
    StoredObject {
        etag: "\"5D41402ABC4B2A76B9719D911017C592\"".into(),
        size: 5,
        last_modified: modified.parse::<Timestamp>().unwrap(),
        content_type: "text/plain".into(),
        meta: Vec::new(),
        sse,
    }
}

/// 3 None, 2 AES256, 1 SM4, 4 KMS (3 under k1, 1 under the managed key), 2 KMS+SM4 (k2).
fn fill(oss: &TestOss, bucket: &str) {
    let mut objects = oss.emulator.state().objects();
    let plain = [
        ("old/none-1", "2019-05-01T00:00:00Z"),
        ("none-2", "2021-01-01T00:00:00Z"),
        ("dir/a b+c/中文 ü~.txt", "2022-01-01T00:00:00Z"),
    ];
    for (key, at) in plain {
        objects.put(bucket, key, object(ObjectSse::none(), at));
    }
    objects.put(
        bucket,
        "aes-1",
        object(ObjectSse::service("AES256"), "2018-01-01T00:00:00Z"),
    );
    objects.put(
        bucket,
        "aes-2",
        object(ObjectSse::service("AES256"), "2025-06-01T00:00:00Z"),
    );
    objects.put(
        bucket,
        "sm4-1",
        object(ObjectSse::service("SM4"), "2024-01-01T00:00:00Z"),
    );
    for i in 0..3 {
        objects.put(
            bucket,
            &format!("kms-{i}"),
            object(ObjectSse::kms("k1", false), "2026-01-01T00:00:00Z"),
        );
    }
    objects.put(
        bucket,
        "kms-managed",
        object(ObjectSse::kms("", false), "2026-01-01T00:00:00Z"),
    );
    for i in 0..2 {
        objects.put(
            bucket,
            &format!("kms-sm4-{i}"),
            object(ObjectSse::kms("k2", true), "2026-01-01T00:00:00Z"),
        );
    }
}

fn manifest(dir: &std::path::Path, bucket: &str, rule: &str) -> String {
    let path = dir.join(format!("{bucket}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {{name: {bucket}, namespace: team}}\nspec: {{bucket: {bucket}, region: cn-hangzhou, {rule}}}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn audit(oss: &TestOss, dir: &std::path::Path, args: &[&str]) -> (i32, Value, String) {
    let mut all: Vec<String> = vec!["audit".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend([
        "--credentials-file".into(),
        oss.write_credentials(dir).display().to_string(),
        "-o".into(),
        "json".into(),
    ]);
    let (code, stdout, stderr) = oss.cli(all).await;
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (code, report, stderr)
}

#[tokio::test]
async fn audit_all_counts_every_kind_exactly_and_exits_1_below_the_rule() {
    let oss = TestOss::start(&["data-kms"]).await;
    fill(&oss, "data-kms");
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), "data-kms", "algorithm: KMS, kmsMasterKeyId: k1");
    let (code, report, stderr) = audit(&oss, dir.path(), &["-f", &path, "--all"]).await;
    assert_eq!(code, 1, "objects below the rule: {stderr}");
    let bucket = &report["buckets"][0];
    assert_eq!(bucket["bucket"], "data-kms");
    assert_eq!(bucket["rule"], "KMS (key k1)");
    assert_eq!(bucket["ruleFrom"], "manifest");
    assert_eq!(bucket["listed"], 12);
    let objects = &bucket["objects"];
    assert_eq!(objects["examined"], 12);
    assert_eq!(
        objects["belowRule"], 6,
        "None, AES256 and SM4 are weaker than KMS"
    );
    assert_eq!(
        objects["byEncryption"],
        json!({"None": 3, "AES256": 2, "SM4": 1, "KMS": 4, "KMS+SM4": 2})
    );
    assert_eq!(objects["byKey"], json!({"k1": 3, "k2": 2, MANAGED_CMK_ID: 1}));
    assert_eq!(objects["oldestBelowRule"]["key"], "aes-1");
    assert_eq!(
        objects["oldestBelowRule"]["lastModified"],
        "2018-01-01T00:00:00.000Z"
    );
    assert_eq!(objects["newestBelowRule"]["key"], "aes-2");
    assert_eq!(
        bucket["requests"],
        json!({"getBucketEncryption": 0, "listObjects": 1, "headObject": 12})
    );
    assert_eq!(bucket["errorCount"], 0);
    assert!(
        bucket.get("belowRuleShare").is_none(),
        "no estimate when every object is examined"
    );
    assert_eq!(report["belowRule"], 6);
    assert!(
        stderr.contains("bucket data-kms: 12 listed, 12 examined, 6 below the rule"),
        "{stderr}"
    );
    assert_eq!(oss.writes(), 0);
    assert_eq!(
        oss.emulator.state().total("PutObject") + oss.emulator.state().total("CopyObject"),
        0,
        "read-only"
    );

    // The same objects against an AES256 rule: only the three unencrypted ones are below it.
    let path = manifest(dir.path(), "data-kms", "algorithm: AES256");
    let (code, report, _) = audit(&oss, dir.path(), &["-f", &path]).await;
    assert_eq!(code, 1);
    assert_eq!(report["buckets"][0]["objects"]["belowRule"], 3);
    assert_eq!(
        report["buckets"][0]["objects"]["oldestBelowRule"]["key"],
        "old/none-1"
    );
    assert_eq!(
        report["buckets"][0]["objects"]["newestBelowRule"]["key"],
        "dir/a b+c/中文 ü~.txt"
    );
    // Against no rule nothing is below it: exit 0.
    let path = manifest(dir.path(), "data-kms", "algorithm: None");
    let (code, report, _) = audit(&oss, dir.path(), &["-f", &path]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["buckets"][0]["objects"]["belowRule"], 0);
}

#[tokio::test]
async fn all_buckets_audits_each_against_its_own_rule() {
    let oss = TestOss::start(&["acct-a", "acct-b", "other"]).await;
    fill(&oss, "acct-a");
    fill(&oss, "acct-b");
    let state = oss.emulator.state();
    state.set_rule(
        "acct-a",
        Some(StoredRule {
            algorithm: "SM4".into(),
            ..StoredRule::default()
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, report, stderr) =
        audit(&oss, dir.path(), &["--all-buckets", "--bucket-prefix", "acct-"]).await;
    assert_eq!(code, 1, "{stderr}");
    let buckets = report["buckets"].as_array().unwrap();
    let names: Vec<&str> = buckets.iter().map(|b| b["bucket"].as_str().unwrap()).collect();
    assert_eq!(names, ["acct-a", "acct-b"]);
    assert_eq!(buckets[0]["rule"], "SM4");
    assert_eq!(buckets[0]["ruleFrom"], "bucket");
    assert_eq!(buckets[0]["objects"]["belowRule"], 3);
    assert_eq!(buckets[1]["rule"], "None");
    assert_eq!(buckets[1]["objects"]["belowRule"], 0);
    assert_eq!(buckets[1]["requests"]["getBucketEncryption"], 1);
    assert_eq!(report["examined"], 24);
}

#[tokio::test]
async fn a_sample_examines_exactly_n_with_a_wilson_interval() {
    let oss = TestOss::start(&["big"]).await;
    // 1,000 objects, one in four unencrypted (the rest KMS): the share below KMS is 25%.
    oss.emulator
        .state()
        .seed_objects(
            "big",
            Seed {
                prefix: "o/".into(),
                count: 1000,
                encryptions: vec![
                    ObjectSse::none(),
                    ObjectSse::kms("k1", false),
                    ObjectSse::kms("k1", false),
                    ObjectSse::kms("k1", false),
                ],
                last_modified: None,
                size: 1,
            },
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), "big", "algorithm: KMS");
    let (code, report, stderr) = audit(&oss, dir.path(), &["-f", &path, "--sample", "200"]).await;
    assert_eq!(code, 1, "{stderr}");
    let bucket = &report["buckets"][0];
    assert_eq!(bucket["mode"], "sample");
    assert_eq!(bucket["listed"], 1000);
    assert_eq!(bucket["objects"]["examined"], 200);
    assert_eq!(bucket["requests"]["headObject"], 200);
    assert_eq!(bucket["requests"]["listObjects"], 1);
    assert_eq!(
        oss.emulator.state().total("HeadObject"),
        200,
        "exactly N HeadObject requests"
    );
    let by = &bucket["objects"]["byEncryption"];
    assert_eq!(by["None"].as_u64().unwrap() + by["KMS"].as_u64().unwrap(), 200);
    let share = &bucket["belowRuleShare"];
    let (estimate, low, high) = (
        share["estimate"].as_f64().unwrap(),
        share["low"].as_f64().unwrap(),
        share["high"].as_f64().unwrap(),
    );
    assert_eq!(estimate, by["None"].as_f64().unwrap() / 200.0);
    assert!(low < estimate && estimate < high, "{share}");
    assert!(
        high - low < 0.15,
        "a 200-object sample pins the share to within a few points: {share}"
    );
    assert_eq!(share["method"], "Wilson score interval, 95%");

    // A sample larger than the bucket examines every object.
    let (_, report, _) = audit(&oss, dir.path(), &["-f", &path, "--sample", "5000"]).await;
    assert_eq!(report["buckets"][0]["objects"]["examined"], 1000);
    assert_eq!(report["buckets"][0]["objects"]["belowRule"], 250);
}

#[tokio::test]
async fn bad_input_touches_nothing_and_says_why() {
    let oss = TestOss::start(&["data-kms"]).await;
    let dir = tempfile::tempdir().unwrap();
    let good = manifest(dir.path(), "data-kms", "algorithm: KMS");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: x}\nspec: {bucket: Bad_Name, region: cn-hangzhou, algorithm: KMS}\n",
    )
    .unwrap();
    let (code, report, stderr) =
        audit(&oss, dir.path(), &["-f", &good, "-f", &bad.display().to_string()]).await;
    assert_eq!(code, 1);
    assert_eq!(report, Value::Null, "no report: {stderr}");
    assert!(
        stderr.contains("spec.bucket") && stderr.contains("nothing audited"),
        "{stderr}"
    );
    let (code, _, stderr) = audit(&oss, dir.path(), &["-f", &good, "--sample", "10", "--all"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let (code, _, stderr) = audit(&oss, dir.path(), &["--sample", "0", "--all-buckets"]).await;
    assert_eq!(code, 1, "{stderr}");
    let counters = oss.emulator.state().counters();
    assert!(counters.is_empty(), "no request was made: {counters:?}");
}
