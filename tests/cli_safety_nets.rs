//! `plan` and `apply` with the safety nets: the binary against the emulator (OSS and KMS), rows
//! `blocked (downgrade)` and `blocked (key)`, the KMS KEY column and JSON field, exit codes
//! (`--detailed-exitcode` treats a blocked row as an error) and `--allow-downgrade`.

mod support;

use oss_encryption_operator::emulator::{EmulatorConfig, KmsKey, StoredRule};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

async fn emulator() -> TestOss {
    let oss = TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: ["kms-held", "key-good", "key-bad"]
            .iter()
            .map(|b| (b.to_string(), REGION.to_owned()))
            .collect(),
        kms_keys: vec![(
            "key-good".into(),
            KmsKey {
                region: REGION.into(),
                ..KmsKey::default()
            },
        )],
        ..EmulatorConfig::default()
    })
    .await;
    oss.emulator.state().set_rule(
        "kms-held",
        Some(StoredRule {
            algorithm: "KMS".into(),
            ..StoredRule::default()
        }),
    );
    oss
}

const DOWNGRADE: &str = "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: weaker, namespace: ns}\nspec: {bucket: kms-held, region: cn-hangzhou, algorithm: AES256}\n";

const KEYS: &str = "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: good, namespace: ns}\nspec: {bucket: key-good, region: cn-hangzhou, algorithm: KMS, kmsMasterKeyId: key-good}\n---\napiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: bad, namespace: ns}\nspec: {bucket: key-bad, region: cn-hangzhou, algorithm: KMS, kmsMasterKeyId: key-missing}\n";

/// Runs the binary over `manifest` with the test key, OSS and KMS calls going to the emulator.
async fn cli(oss: &TestOss, manifest: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, manifest).unwrap();
    let credentials = oss.write_credentials(dir.path());
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend([
        "-f".to_owned(),
        path.display().to_string(),
        "--credentials-file".to_owned(),
        credentials.display().to_string(),
        "--kms-endpoint".to_owned(),
        oss.emulator.url(),
    ]);
    oss.cli(all).await
}

#[tokio::test]
async fn a_downgrade_is_a_blocked_row_until_allowed() {
    let oss = emulator().await;
    let (code, stdout, stderr) = cli(&oss, DOWNGRADE, &["plan", "--detailed-exitcode"]).await;
    assert_eq!(
        code, 1,
        "a blocked row is an error under --detailed-exitcode\n{stdout}{stderr}"
    );
    let row = stdout.lines().find(|l| l.starts_with("ns/weaker")).unwrap();
    assert!(
        row.contains("blocked (downgrade)") && row.contains("--allow-downgrade"),
        "{row}"
    );
    assert!(stdout.contains("0 to change, 0 error(s), 1 blocked"), "{stdout}");
    let header = stdout.lines().find(|l| l.starts_with("RESOURCE")).unwrap();
    let action = header.find("ACTION").unwrap();
    assert_eq!(
        row[action..].split("  ").next(),
        Some("blocked (downgrade)"),
        "the ACTION column holds its widest value\n{stdout}"
    );
    assert_eq!(
        header.find("KMS KEY"),
        row.find(" -  ").map(|i| i + 1),
        "the KMS KEY column stays aligned\n{stdout}"
    );

    let (code, stdout, _) = cli(&oss, DOWNGRADE, &["apply"]).await;
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(oss.writes(), 0, "apply wrote nothing");

    let (code, stdout, _) = cli(
        &oss,
        DOWNGRADE,
        &["plan", "--detailed-exitcode", "--allow-downgrade"],
    )
    .await;
    assert_eq!(code, 2, "allowed: a pending change\n{stdout}");
    let (code, stdout, _) = cli(&oss, DOWNGRADE, &["apply", "--allow-downgrade"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        oss.emulator
            .state()
            .bucket("kms-held")
            .unwrap()
            .rule
            .unwrap()
            .algorithm,
        "AES256"
    );
}

#[tokio::test]
async fn the_manifest_can_allow_its_own_downgrade() {
    let oss = emulator().await;
    let allowed = DOWNGRADE.replace("algorithm: AES256}", "algorithm: AES256, allowDowngrade: true}");
    let (code, stdout, stderr) = cli(&oss, &allowed, &["apply"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(oss.emulator.state().total("PutBucketEncryption"), 1);
}

#[tokio::test]
async fn keys_are_checked_and_shown_in_the_table_and_json() {
    let oss = emulator().await;
    let (code, stdout, stderr) = cli(&oss, KEYS, &["apply"]).await;
    assert_eq!(code, 1, "a key OSS cannot use fails the run\n{stdout}{stderr}");
    let header = stdout.lines().find(|l| l.starts_with("RESOURCE")).unwrap();
    assert!(header.contains("KMS KEY"), "{header}");
    let good = stdout.lines().find(|l| l.starts_with("ns/good")).unwrap();
    assert!(good.contains("usable") && good.contains("applied"), "{good}");
    let bad = stdout.lines().find(|l| l.starts_with("ns/bad")).unwrap();
    assert!(
        bad.contains("blocked (key)") && bad.contains("not usable") && bad.contains("key-missing"),
        "{bad}"
    );
    assert_eq!(
        oss.emulator.state().total("PutBucketEncryption"),
        1,
        "only the good key's bucket"
    );
    assert!(oss.emulator.state().bucket("key-bad").unwrap().rule.is_none());

    let (_, json, _) = cli(&oss, KEYS, &["plan", "-o", "json"]).await;
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows[0]["keyCheck"], "usable");
    assert_eq!(rows[0]["action"], "none");
    assert_eq!(rows[1]["keyCheck"], "not usable");
    assert_eq!(rows[1]["action"], "blocked (key)");
    assert_eq!(report["blocked"], 1);

    let (code, stdout, _) = cli(&oss, KEYS, &["plan", "--kms-preflight=false"]).await;
    assert_eq!(code, 0, "switched off: no check, no block\n{stdout}");
    let bad = stdout.lines().find(|l| l.starts_with("ns/bad")).unwrap();
    assert!(bad.contains(" put ") && !bad.contains("usable"), "{bad}");
}

#[tokio::test]
async fn a_key_check_that_cannot_run_is_an_error_row() {
    let oss = emulator().await;
    oss.emulator.state().set_kms_denied(ACCESS_KEY_ID, true);
    let (code, stdout, _) = cli(&oss, KEYS, &["apply"]).await;
    assert_eq!(code, 1, "{stdout}");
    let good = stdout.lines().find(|l| l.starts_with("ns/good")).unwrap();
    assert!(
        good.contains("error") && good.contains("check failed") && good.contains("Forbidden.NoPermission"),
        "{good}"
    );
    assert_eq!(oss.writes(), 0);
}

/// `count` KMS resources over buckets `shared-key-NNN`, all naming the key `key-good`.
fn shared_key_manifests(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "---\napiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {{name: r{i:03}, namespace: ns}}\nspec: {{bucket: shared-key-{i:03}, region: {REGION}, algorithm: KMS, kmsMasterKeyId: key-good}}\n"
            )
        })
        .collect()
}

async fn shared_key_account(count: usize, faults: oss_encryption_operator::emulator::Faults) -> TestOss {
    let oss = TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: (0..count)
            .map(|i| (format!("shared-key-{i:03}"), REGION.to_owned()))
            .collect(),
        kms_keys: vec![(
            "key-good".into(),
            KmsKey {
                region: REGION.into(),
                ..KmsKey::default()
            },
        )],
        ..EmulatorConfig::default()
    })
    .await;
    oss.emulator.state().set_faults(faults);
    oss
}

/// Every row `check failed`, nothing written, and the DescribeKey calls made.
async fn apply_with_a_failing_kms(faults: oss_encryption_operator::emulator::Faults) -> u64 {
    let count = 200;
    let oss = shared_key_account(count, faults).await;
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = cli(&oss, &shared_key_manifests(count), &["apply", "-o", "json"]).await;
    let calls = oss.emulator.state().total("DescribeKey");
    println!(
        "{count} manifests sharing one key: {:.1} s, {calls} DescribeKey call(s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 1, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), count);
    assert!(rows.iter().all(|r| r["keyCheck"] == "check failed"), "{stdout}");
    assert_eq!(oss.writes(), 0, "nothing written");
    calls
}

#[tokio::test]
async fn a_failing_kms_is_asked_once_per_key_per_run() {
    let calls = apply_with_a_failing_kms(oss_encryption_operator::emulator::Faults {
        kms_error_rate: 1.0,
        ..Default::default()
    })
    .await;
    assert!(
        calls <= 3,
        "one retry ladder (3 attempts) for the run, not one per row: {calls}"
    );
}

#[tokio::test]
async fn a_throttling_kms_is_asked_once_per_key_per_run() {
    let calls = apply_with_a_failing_kms(oss_encryption_operator::emulator::Faults {
        kms_throttle_rate: 1.0,
        ..Default::default()
    })
    .await;
    assert!(
        calls <= 6,
        "one throttled retry ladder (6 attempts) for the run: {calls}"
    );
}

/// `allowDowngrade` spelled as kubectl reads it: sigs.k8s.io/yaml turns YAML into JSON with
/// go-yaml v2 (YAML 1.1), so the plain scalars y/Y/yes/Yes/YES/on/On/ON (and true/True/TRUE)
/// are `true`; any other spelling (`yES`, `oN`) or a quoted "yes" is a string, which the API
/// server refuses for a boolean field.
#[tokio::test]
async fn allow_downgrade_reads_yes_as_kubectl_does() {
    for (spelling, allowed) in [
        ("yes", true),
        ("Yes", true),
        ("ON", true),
        ("y", true),
        ("True", true),
        ("no", false),
        ("Off", false),
        ("N", false),
    ] {
        let oss = emulator().await;
        let manifest = DOWNGRADE.replace(
            "algorithm: AES256}",
            &format!("algorithm: AES256, allowDowngrade: {spelling}}}"),
        );
        let (code, stdout, stderr) = cli(&oss, &manifest, &["apply"]).await;
        let written = oss.emulator.state().total("PutBucketEncryption");
        assert_eq!(
            (code == 0, written),
            (allowed, u64::from(allowed)),
            "allowDowngrade: {spelling}\n{stdout}{stderr}"
        );
    }
    for spelling in ["yES", "oN", "tRUE", "\"yes\"", "'true'"] {
        let oss = emulator().await;
        let manifest = DOWNGRADE.replace(
            "algorithm: AES256}",
            &format!("algorithm: AES256, allowDowngrade: {spelling}}}"),
        );
        let (code, stdout, stderr) = cli(&oss, &manifest, &["apply"]).await;
        assert_ne!(
            code, 0,
            "allowDowngrade: {spelling} is a string, not a boolean\n{stdout}{stderr}"
        );
        assert_eq!(oss.emulator.state().total("PutBucketEncryption"), 0, "{spelling}");
        assert!(
            format!("{stdout}{stderr}").contains("expected a boolean"),
            "the document is invalid: {stdout}{stderr}"
        );
    }
}
