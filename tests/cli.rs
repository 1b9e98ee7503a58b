//! `plan` and `apply` end to end: the binary with `--emulator`, exit codes, bad manifests,
//! JSON output, and idempotency against one emulator.

mod support;

use std::path::PathBuf;
use std::process::Command;

use oss_encryption_operator::cli::{self, Engine, Mode};
use oss_encryption_operator::manifest;
use support::oss::TestOss;

fn operator(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn apply_with_the_emulator_converges_the_examples() {
    let (code, stdout, stderr) = operator(&["apply", "--emulator", "-f", "examples/"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for expected in [
        "platform/audit-logs",
        "AES256",
        "KMS (key 9468da86-3509-4f8d-a61e-6eab1eac0000, data SM4)",
        "report-only",
        "6 resource(s): 4 changed, 0 error(s)",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}:\n{stdout}");
    }
}

#[test]
fn plan_detailed_exitcode_is_two_when_changes_are_pending() {
    let (code, stdout, _) = operator(&[
        "plan",
        "--emulator",
        "-f",
        "examples/aes256.yaml",
        "--detailed-exitcode",
    ]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("would put"));
    let (code, _, _) = operator(&[
        "plan",
        "--emulator",
        "-f",
        "examples/none.yaml",
        "--detailed-exitcode",
    ]);
    assert_eq!(code, 0, "an empty bucket already matches None");
}

#[test]
fn json_output_is_machine_readable() {
    let (code, stdout, _) = operator(&["plan", "--emulator", "-f", "examples/kms.yaml", "-o", "json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["changes"], 2);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["rows"][0]["resource"], "platform/payments-archive");
    assert_eq!(report["rows"][0]["action"], "put");
    assert_eq!(report["rows"][0]["requestId"].as_str().unwrap().len(), 24);
}

#[test]
fn bad_manifests_are_named_and_the_good_ones_still_proceed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.yaml"),
        std::fs::read_to_string("examples/sm4.yaml").unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: broken}\nspec: {bucket: broken, region: cn-hangzhou, algorithm: AES256, kmsMasterKeyId: k}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("junk.yaml"), "{{ not yaml").unwrap();
    let path = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = operator(&["apply", "--emulator", "-f", path, "--namespace", "team-x"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("kmsMasterKeyId"), "{stdout}");
    assert!(
        stdout.contains("bad.yaml (document 2)") && stdout.contains("Deployment"),
        "{stdout}"
    );
    assert!(
        stdout.contains("junk.yaml") && stdout.contains("not valid YAML"),
        "{stdout}"
    );
    assert!(
        stdout.contains("platform/gov-records") && stdout.contains("applied"),
        "the valid one proceeds:\n{stdout}"
    );
    assert!(stdout.contains("1 changed, 3 error(s)"), "{stdout}");
}

#[test]
fn no_credentials_is_an_error_row_and_nothing_is_sent() {
    let (code, stdout, _) = operator(&[
        "plan",
        "-f",
        "examples/sm4.yaml",
        "--endpoint",
        "https://oss-cn-hangzhou.aliyuncs.com",
    ]);
    // No ALIBABA_CLOUD_* / OSS_* variables in the test environment unless a developer set them.
    if std::env::var_os("ALIBABA_CLOUD_ACCESS_KEY_ID").is_none()
        && std::env::var_os("OSS_ACCESS_KEY_ID").is_none()
    {
        assert_eq!(code, 1, "{stdout}");
        assert!(stdout.contains("no credentials"), "{stdout}");
    }
}

#[tokio::test]
async fn apply_is_idempotent_and_uses_secrets_from_the_manifests() {
    let oss = TestOss::start(&["idem-bucket"]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: ops}}\nstringData: {{accessKeyId: {}, accessKeySecret: {}}}\n---\napiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {{name: idem, namespace: ops}}\nspec: {{bucket: idem-bucket, region: cn-hangzhou, algorithm: KMS, kmsDataEncryption: SM4, endpoint: '{}', credentials: {{secretRef: {{name: creds}}}}}}\n",
        support::oss::ACCESS_KEY_ID,
        support::oss::ACCESS_KEY_SECRET,
        oss.emulator.url()
    );
    std::fs::write(dir.path().join("m.yaml"), manifest).unwrap();
    let manifests = manifest::load(&[PathBuf::from(dir.path())], "default");
    assert!(manifests.errors.is_empty(), "{:?}", manifests.errors);
    let engine = Engine {
        client: oss.client(),
        default_credentials: None,
        credentials_refused: None,
        endpoint_override: None,
        ignore_secrets: false,
        key_checker: None,
        allow_downgrade: false,
    };
    let first = cli::run(Mode::Apply, &manifests, &engine).await;
    assert_eq!((first.changes, first.errors), (1, 0), "{first:?}");
    assert_eq!(
        oss.emulator
            .state()
            .bucket("idem-bucket")
            .unwrap()
            .rule
            .unwrap()
            .kms_data_encryption,
        "SM4"
    );
    let second = cli::run(Mode::Apply, &manifests, &engine).await;
    assert_eq!((second.changes, second.errors), (0, 0), "{second:?}");
    assert_eq!(second.rows[0].result, "no change");
    assert_eq!(
        oss.emulator.state().total("PutBucketEncryption"),
        1,
        "the second run wrote nothing"
    );
    let plan = cli::run(Mode::Plan, &manifests, &engine).await;
    assert_eq!(plan.changes, 0);
}

#[test]
fn one_bucket_has_one_owner_whatever_its_endpoint_or_region_spelling() {
    let dir = tempfile::tempdir().unwrap();
    // Listed in the file before its owner: ownership is by namespace and name, not file order.
    let manifests = r#"
apiVersion: oss.encryption.dev/v1alpha1
kind: BucketEncryption
metadata: {name: second, namespace: platform}
spec: {bucket: shared-bucket, region: cn-shanghai, algorithm: SM4, endpoint: oss-cn-shanghai-internal.aliyuncs.com}
---
apiVersion: oss.encryption.dev/v1alpha1
kind: BucketEncryption
metadata: {name: first, namespace: platform}
spec: {bucket: shared-bucket, region: cn-hangzhou, algorithm: AES256}
"#;
    let path = dir.path().join("twice.yaml");
    std::fs::write(&path, manifests).unwrap();
    let (code, stdout, stderr) =
        operator(&["apply", "--emulator", "-f", path.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 1, "the conflict is an error row: {stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["resource"] == format!("platform/{name}"))
            .unwrap()
    };
    assert_eq!(row("first")["action"], "put");
    assert_eq!(row("second")["action"], "error");
    let result = row("second")["result"].as_str().unwrap();
    assert!(
        result.contains("platform/first") && result.contains("shared-bucket"),
        "{result}"
    );
    assert_eq!(report["changes"], 1, "exactly one write");
}
