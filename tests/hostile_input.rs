//! The CLI against hostile and careless input, run as the binary: broken files never echo their
//! content, misspelt fields are refused before anything is sent, one bad document spares the
//! others, directory walks end, and usage errors never look like "changes pending".

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, TestOss};

const CANARY: &str = "CanarySecretValue0123456789xyz";

fn operator(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const RESOURCE: &str = "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: NAME, namespace: ns}\nspec: {bucket: BUCKET, region: cn-hangzhou, algorithm: AES256}\n";

fn resource(name: &str, bucket: &str) -> String {
    RESOURCE.replace("NAME", name).replace("BUCKET", bucket)
}

/// Runs the CLI against an emulator the test owns, so its request counters can be read.
async fn against_emulator(
    oss: &TestOss,
    dir: &Path,
    command: &str,
    paths: &[&str],
    extra: &[&str],
) -> (i32, String, String) {
    let credentials = write(
        dir,
        "credentials.yaml",
        &format!("accessKeyId: {ACCESS_KEY_ID}\naccessKeySecret: {ACCESS_KEY_SECRET}\n"),
    );
    let endpoint = oss.emulator.url();
    let authority = oss.emulator.endpoint().authority();
    let mut args = vec![
        command,
        "--endpoint",
        &endpoint,
        "--allowed-endpoint-suffixes",
        &authority,
        "--credentials-file",
        &credentials,
    ];
    for path in paths {
        args.extend(["-f", path]);
    }
    args.extend(extra);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // Off the runtime's thread: the emulator serves on it while the binary runs.
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Every log line the binary can write, so a leak through logs shows too.
        operator(&args, &[("RUST_LOG", "trace")])
    })
    .await
    .unwrap()
}

#[test]
fn a_broken_credentials_file_never_echoes_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(dir.path(), "r.yaml", &resource("r", "some-bucket"));
    let broken = write(
        dir.path(),
        "credentials.yaml",
        &format!("accessKeyId: LTAI5tCanaryId\naccessKeySecret: {CANARY}\n  securityToken: [unclosed\n"),
    );
    for level in ["error", "debug", "trace"] {
        for output in ["table", "json"] {
            let (code, stdout, stderr) = operator(
                &[
                    "plan",
                    "-f",
                    &manifest,
                    "--credentials-file",
                    &broken,
                    "-o",
                    output,
                ],
                &[("RUST_LOG", level)],
            );
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(
                !stdout.contains(CANARY) && !stderr.contains(CANARY),
                "the secret leaked (RUST_LOG={level}):\n{stdout}\n{stderr}"
            );
            assert!(
                stderr.contains("credentials.yaml") && stderr.contains("line 3"),
                "{stderr}"
            );
        }
    }
}

#[tokio::test]
async fn a_broken_secret_manifest_never_echoes_the_secret() {
    let oss = TestOss::start(&["guarded"]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = write(
        dir.path(),
        "all.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: ns}}\nstringData:\n  accessKeyId: LTAI5tCanaryId\n   accessKeySecret: {CANARY}\n",
            resource("guarded", "guarded")
        ),
    );
    for output in ["table", "json"] {
        let (_, stdout, stderr) =
            against_emulator(&oss, dir.path(), "plan", &[&manifests], &["-o", output]).await;
        assert!(
            !stdout.contains(CANARY) && !stderr.contains(CANARY),
            "the secret leaked ({output}):\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("document 2"), "{stdout}");
    }
}

#[tokio::test]
async fn misspelt_fields_are_refused_with_a_hint_and_nothing_is_sent() {
    let oss = TestOss::start(&["observed-only"]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "typo.yaml",
        "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: typo, namespace: ns}\nspec:\n  bucket: observed-only\n  region: cn-hangzhou\n  algorithm: KMS\n  kmsMasterKeyID: my-key\n  kmsDataEncrpytion: SM4\n  managementPolcy: Observe\n",
    );
    let top = write(
        dir.path(),
        "top.yaml",
        "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: top, namespace: ns}\nspce: {bucket: observed-only, region: cn-hangzhou, algorithm: AES256}\n",
    );
    let (code, stdout, stderr) = against_emulator(&oss, dir.path(), "apply", &[&manifest, &top], &[]).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    for (field, hint) in [
        ("kmsMasterKeyID", "kmsMasterKeyId"),
        ("kmsDataEncrpytion", "kmsDataEncryption"),
        ("managementPolcy", "managementPolicy"),
        ("spce", "spec"),
    ] {
        assert!(
            stdout.contains(&format!("unknown field {field}")) && stdout.contains(hint),
            "{field} → {hint}:\n{stdout}"
        );
    }
    assert!(
        oss.emulator.state().counters().is_empty(),
        "nothing was sent: {:?}",
        oss.emulator.state().counters()
    );
    assert_eq!(oss.emulator.state().bucket("observed-only").unwrap().rule, None);
}

#[tokio::test]
async fn one_syntax_error_spares_the_other_documents() {
    let oss = TestOss::start(&["first-doc", "third-doc"]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = write(
        dir.path(),
        "three.yaml",
        &format!(
            "{}---\nkind: [unclosed\n---\n{}",
            resource("first", "first-doc"),
            resource("third", "third-doc")
        ),
    );
    let (code, stdout, stderr) =
        against_emulator(&oss, dir.path(), "plan", &[&manifests], &["-o", "json"]).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let resources: Vec<&str> = rows.iter().filter_map(|r| r["resource"].as_str()).collect();
    assert!(
        resources.contains(&"ns/first") && resources.contains(&"ns/third"),
        "{stdout}"
    );
    let error = rows.iter().find(|r| r["action"] == "error").unwrap();
    assert!(
        error["source"].as_str().unwrap().contains("(document 2)"),
        "{error}"
    );
    // The document starts on line 6 of the file; its error is on the file's line 6.
    assert!(error["result"].as_str().unwrap().contains("line 6"), "{error}");
}

#[test]
fn symlink_loops_end_and_each_file_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    write(&manifests, "one.yaml", &resource("one", "once-only"));
    std::os::unix::fs::symlink(&manifests, manifests.join("loop")).unwrap();
    std::os::unix::fs::symlink("..", manifests.join("up")).unwrap();
    std::os::unix::fs::symlink("one.yaml", manifests.join("alias.yaml")).unwrap();
    let fifo = manifests.join("pipe.yaml");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
        .args(["plan", "--emulator", "-o", "json", "-f"])
        .arg(&manifests)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("the walk did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    println!("walked in {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect(&stderr);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        1,
        "one resource, read once, no false conflict: {stdout}"
    );
    assert_eq!(report["errors"], 0, "{stdout}");
    assert!(
        stderr.contains("pipe.yaml") && stderr.contains("skipped"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_never_exit_two() {
    for args in [
        vec!["plan", "--detailed-exitcode", "--no-such-flag", "-f", "x.yaml"],
        vec!["plan", "--detailed-exitcode"],
        vec!["apply", "-o", "yaml", "-f", "x.yaml"],
        vec!["no-such-command"],
    ] {
        let (code, stdout, stderr) = operator(&args, &[]);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("error:"), "{stderr}");
    }
    let (code, stdout, _) = operator(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage"));
}

#[tokio::test]
async fn table_rows_are_one_line_and_name_their_document() {
    let oss = TestOss::start(&["fine", "multi"]).await;
    let dir = tempfile::tempdir().unwrap();
    let invalid = write(
        dir.path(),
        "invalid.yaml",
        &format!(
            "{}---\n{}",
            resource("fine", "fine"),
            resource("bad", "multi").replace("algorithm: AES256", "algorithm: AES256, kmsMasterKeyId: k")
        ),
    );
    let (_, stdout, _) = against_emulator(&oss, dir.path(), "plan", &[&invalid], &[]).await;
    let bad = stdout
        .lines()
        .find(|l| l.starts_with("ns/bad"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(bad.contains("invalid.yaml (document 2)"), "{bad}");
    // Every row is one line: header, two rows, blank, totals.
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
}

#[tokio::test]
async fn schemes_are_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "upper.yaml",
        &resource("upper", "upper-bucket").replace(
            "algorithm: AES256",
            "algorithm: AES256, endpoint: HTTPS://oss-cn-hangzhou.aliyuncs.com",
        ),
    );
    let (_, stdout, stderr) = operator(&["plan", "--emulator", "-f", &manifest], &[]);
    assert!(
        stdout.contains("would put") && !stdout.contains("only http and https"),
        "{stdout}{stderr}"
    );
}

#[test]
fn a_namespace_that_is_not_a_string_is_an_error_never_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for (i, namespace) in ["5", "[x]", "{a: b}", "true"].iter().enumerate() {
        text.push_str(&format!(
            "---\napiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {{name: n{i}, namespace: {namespace}}}\nspec: {{bucket: typed-ns-{i}, region: cn-hangzhou, algorithm: AES256}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s{i}, namespace: {namespace}}}\nstringData: {{accessKeyId: a, accessKeySecret: b}}\n"
        ));
    }
    let path = write(dir.path(), "typed.yaml", &text);
    let (code, stdout, stderr) = operator(&["apply", "-f", &path, "--emulator", "-o", "json"], &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(report["errors"], 8, "{stdout}");
    assert_eq!(report["changes"], 0, "{stdout}");
    for row in rows {
        assert!(
            row["result"]
                .as_str()
                .unwrap()
                .contains("metadata.namespace must be a string"),
            "{row}"
        );
        assert!(
            !row["resource"].as_str().unwrap().starts_with("default/"),
            "{row}"
        );
    }
}

#[test]
fn rejected_environment_credentials_are_reported_not_hidden_as_none() {
    let (code, stdout, stderr) = operator(
        &[
            "plan",
            "-f",
            "examples/sm4.yaml",
            "--endpoint",
            "https://oss-cn-hangzhou.aliyuncs.com",
        ],
        &[("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1234:role/demo")],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("ALIBABA_CLOUD_OIDC_PROVIDER_ARN") && stdout.contains("refused"),
        "the rows say why the environment's credentials were refused: {stdout}"
    );
}
