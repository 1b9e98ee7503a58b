//! `import` end to end: the binary against an emulator holding 50 buckets in 3 regions with
//! every kind of rule; the written directory round-trips through `plan` (no change) and `apply`
//! (no write); unreadable buckets are named, never dropped; filters and safety of the output.

mod support;

use oss_encryption_operator::emulator::{EmulatorConfig, KmsKey, StoredRule};
use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, TestOss};

const REGIONS: [&str; 3] = ["cn-hangzhou", "cn-shanghai", "ap-southeast-1"];

fn bucket(i: usize) -> String {
    format!("imp-{i:02}")
}

fn rule(i: usize) -> Option<StoredRule> {
    let stored = |algorithm: &str, key: &str, data: &str| StoredRule {
        algorithm: algorithm.into(),
        kms_master_key_id: key.into(),
        kms_data_encryption: data.into(),
    };
    match i % 5 {
        0 => None,
        1 => Some(stored("AES256", "", "")),
        2 => Some(stored("KMS", "", "")),
        3 => Some(stored("KMS", &format!("key-{}", REGIONS[i % 3]), "SM4")),
        _ => Some(stored("SM4", "", "")),
    }
}

async fn account() -> TestOss {
    let oss = TestOss::start_with(EmulatorConfig {
        access_keys: vec![(ACCESS_KEY_ID.into(), ACCESS_KEY_SECRET.into())],
        buckets: (0..50).map(|i| (bucket(i), REGIONS[i % 3].to_owned())).collect(),
        kms_keys: REGIONS
            .iter()
            .map(|r| {
                (
                    format!("key-{r}"),
                    KmsKey {
                        region: r.to_string(),
                        ..KmsKey::default()
                    },
                )
            })
            .collect(),
        ..EmulatorConfig::default()
    })
    .await;
    for i in 0..50 {
        oss.emulator.state().set_rule(&bucket(i), rule(i));
    }
    oss
}

/// The binary against the emulator with the test key.
async fn cli(oss: &TestOss, mut args: Vec<String>) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let credentials = oss.write_credentials(dir.path());
    args.extend(["--credentials-file".to_owned(), credentials.display().to_string()]);
    oss.cli(args).await
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[tokio::test]
async fn import_then_plan_shows_no_change_and_apply_writes_nothing() {
    let oss = account().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("imported");
    let dir_arg = dir.to_str().unwrap();
    let (code, stdout, stderr) = cli(
        &oss,
        strings(&["import", "--namespace", "platform", "-o", dir_arg]),
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("50 bucket(s) imported, 0 could not be read"),
        "{stderr}"
    );
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    for i in 0..50 {
        assert!(
            kustomization.contains(&format!("  - {}.yaml\n", bucket(i))),
            "{kustomization}"
        );
        let text = std::fs::read_to_string(dir.join(format!("{}.yaml", bucket(i)))).unwrap();
        assert!(
            text.contains("managementPolicy: Observe") && text.contains("deletionPolicy: Retain"),
            "{text}"
        );
        assert!(text.contains(&format!("region: {}", REGIONS[i % 3])), "{text}");
    }
    let none = std::fs::read_to_string(dir.join("imp-00.yaml")).unwrap();
    assert!(none.contains("algorithm: None"), "{none}");
    let keyed = std::fs::read_to_string(dir.join("imp-03.yaml")).unwrap();
    assert!(
        keyed.contains("kmsMasterKeyId: key-cn-hangzhou") && keyed.contains("kmsDataEncryption: SM4"),
        "{keyed}"
    );
    assert_eq!(
        oss.emulator.state().total("ListBuckets"),
        1,
        "50 buckets: one page"
    );
    assert_eq!(oss.emulator.state().total("GetBucketEncryption"), 50);
    assert_eq!(oss.writes(), 0, "import only reads");

    let kms = oss.emulator.url();
    let (code, stdout, stderr) = cli(
        &oss,
        strings(&[
            "plan",
            "--detailed-exitcode",
            "-f",
            dir_arg,
            "--kms-endpoint",
            &kms,
        ]),
    )
    .await;
    assert_eq!(code, 0, "no change pending\n{stdout}{stderr}");
    assert!(
        stdout.contains("50 resource(s): 0 to change, 0 error(s)"),
        "{stdout}"
    );
    let (code, stdout, _) = cli(&oss, strings(&["apply", "-f", dir_arg, "--kms-endpoint", &kms])).await;
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(oss.writes(), 0, "apply of an import writes nothing");

    // A second import into the same directory refuses to overwrite anything.
    let (code, _, stderr) = cli(&oss, strings(&["import", "-o", dir_arg])).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("already holds") && stderr.contains("nothing written"),
        "{stderr}"
    );
}

#[tokio::test]
async fn unreadable_buckets_are_named_and_fail_the_run() {
    let oss = account().await;
    oss.emulator
        .state()
        .set_access_denied("imp-07", ACCESS_KEY_ID, true);
    let (code, stdout, stderr) = cli(&oss, strings(&["import"])).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stdout.starts_with("# NOT IMPORTED: bucket imp-07 (cn-shanghai):") && stdout.contains("AccessDenied"),
        "{stdout}"
    );
    assert!(
        stderr.contains("imp-07") && stderr.contains("49 bucket(s) imported, 1 could not be read"),
        "{stderr}"
    );
    assert_eq!(stdout.matches("kind: BucketEncryption").count(), 49);

    let out = tempfile::tempdir().unwrap();
    let (code, _, _) = cli(&oss, strings(&["import", "-o", out.path().to_str().unwrap()])).await;
    assert_eq!(code, 1);
    let kustomization = std::fs::read_to_string(out.path().join("kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("# NOT IMPORTED: bucket imp-07"),
        "{kustomization}"
    );
    assert!(!out.path().join("imp-07.yaml").exists());
}

#[tokio::test]
async fn regions_prefix_and_manage_narrow_and_shape_the_import() {
    let oss = account().await;
    let (code, stdout, stderr) = cli(
        &oss,
        strings(&[
            "import",
            "--region",
            "cn-shanghai",
            "--region",
            "ap-southeast-1",
            "--prefix",
            "imp-1",
            "--manage",
        ]),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let expected: Vec<String> = (10..20).filter(|i| i % 3 != 0).map(bucket).collect();
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("bucket: "))
        .collect();
    assert_eq!(names, expected, "{stdout}");
    assert_eq!(stdout.matches("managementPolicy: Manage").count(), expected.len());
    let (code, _, stderr) = cli(&oss, strings(&["import", "--region", "CN_bad"])).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("--region"), "{stderr}");
}
